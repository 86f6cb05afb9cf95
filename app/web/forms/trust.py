"""Forms of the block list, reports, problem reports, ratings, the admin area and the account page."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DecimalField, EmailField, HiddenField, PasswordField, RadioField, TextAreaField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # types-WTForms predates it
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from app.models.calls import COMMENT_MAX
from app.services.problems import DETAILS_MAX
from app.services.problems import NOTE_MAX as PROBLEM_NOTE_MAX
from app.services.problems import REASONS as PROBLEM_REASONS
from app.services.safety import NOTE_MAX, REASONS, TEXT_MAX
from app.web.forms.money import finite


class EmptyForm(FlaskForm):
    """A button: only the CSRF token, and where to go back to."""

    back = HiddenField(validators=[Optional()])


class BlockForm(FlaskForm):
    email = EmailField("Buyer email", validators=[DataRequired("Enter the email address to block."), Length(max=254)])


class ReportForm(FlaskForm):
    reason = RadioField(
        "What happened?",
        choices=[SelectChoice(value, label) for value, label in REASONS.items()],
        validators=[DataRequired("Choose what happened.")],
    )
    text = TextAreaField(
        "Tell us more (optional)",
        validators=[Optional(), Length(max=TEXT_MAX, message=f"Keep it under {TEXT_MAX} characters.")],
    )


class RatingForm(FlaskForm):
    stars = RadioField(
        "Your rating",
        choices=[SelectChoice(str(n), f"{n} star{'s' if n > 1 else ''}") for n in range(5, 0, -1)],
        validators=[DataRequired("Choose from 1 to 5 stars.")],
    )
    comment = TextAreaField(
        "A few words for the seller (optional)",
        validators=[Optional(), Length(max=COMMENT_MAX, message=f"Keep it under {COMMENT_MAX} characters.")],
    )


class ResolveForm(FlaskForm):
    note = TextAreaField(
        "Resolution note",
        validators=[DataRequired("Write a short note on what was done."), Length(max=NOTE_MAX)],
    )


class SuspendForm(FlaskForm):
    note = TextAreaField("Reason (kept in the audit log)", validators=[Optional(), Length(max=500)])


class EraseForm(FlaskForm):
    email = EmailField("Buyer email", validators=[DataRequired("Enter the buyer's email address."), Length(max=254)])


class DeleteAccountForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired("Enter your password to confirm.")])


class ProblemForm(FlaskForm):
    """ "Report a problem with this call": what went wrong, in a few words."""

    reason = RadioField(
        "What went wrong?",
        choices=[SelectChoice(value, label) for value, label in PROBLEM_REASONS.items()],
        validators=[DataRequired("Choose what went wrong.")],
    )
    details = TextAreaField(
        "Tell us more (optional)",
        validators=[Optional(), Length(max=DETAILS_MAX, message=f"Keep it under {DETAILS_MAX} characters.")],
    )


class ProblemRefundForm(FlaskForm):
    """The admin's refund of a problem case, typed in the currency's major unit (``12.50``)."""

    amount = DecimalField(
        "Refund",
        places=2,
        validators=[InputRequired("Enter an amount."), finite, NumberRange(min=0, message="Enter a positive amount.")],
    )
    note = TextAreaField("Note to both parties", validators=[Optional(), Length(max=PROBLEM_NOTE_MAX)])


class ProblemCloseForm(FlaskForm):
    note = TextAreaField(
        "Note to both parties",
        validators=[DataRequired("Write a short note the parties will read."), Length(max=PROBLEM_NOTE_MAX)],
    )
