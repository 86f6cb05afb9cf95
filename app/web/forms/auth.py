"""Sign-up, log-in and password forms.

The forms check presence and size only; the rules (a valid address, the password policy,
whether the email is taken) live in ``app.services.accounts`` so the pages and the JSON API
refuse the same things with the same words.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from app.services.passwords import MIN_LENGTH

EMAIL_REQUIRED = "Enter your email address."
PASSWORD_HINT = f"At least {MIN_LENGTH} characters. A few unrelated words make a strong, memorable password."


def _email_field() -> EmailField:
    return EmailField("Email", validators=[DataRequired(EMAIL_REQUIRED), Length(max=254)])


class SignupForm(FlaskForm):
    email = _email_field()
    password = PasswordField("Password", validators=[DataRequired("Choose a password.")], description=PASSWORD_HINT)


class LoginForm(FlaskForm):
    email = _email_field()
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])
    next = HiddenField()


class ForgotForm(FlaskForm):
    email = _email_field()


class ResetForm(FlaskForm):
    password = PasswordField(
        "New password", validators=[DataRequired("Choose a new password.")], description=PASSWORD_HINT
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[DataRequired("Repeat the new password."), EqualTo("password", "The two passwords differ.")],
    )


class ChangePasswordForm(FlaskForm):
    # Named apart from the delete form's ``password`` on the same page, so every id is unique.
    current_password = PasswordField("Current password", validators=[DataRequired("Enter your current password.")])
    new_password = PasswordField(
        "New password", validators=[DataRequired("Choose a new password.")], description=PASSWORD_HINT
    )
    confirm_password = PasswordField(
        "Repeat the new password",
        validators=[DataRequired("Repeat the new password."), EqualTo("new_password", "The two passwords differ.")],
    )


class ChangeEmailForm(FlaskForm):
    new_email = EmailField(
        "New email address",
        validators=[DataRequired("Enter the new address."), Length(max=254)],
        description="We send a link there; your email changes when you open it.",
    )
    # Its own name: the page has two other password fields (change password, delete account).
    email_password = PasswordField("Current password", validators=[DataRequired("Enter your current password.")])
