"""The buyer's form on a seller's paywall (``/u/<slug>``)."""

from __future__ import annotations

import secrets

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

NOTE_MAX = 280


class PaywallForm(FlaskForm):
    buyer_email = EmailField(
        "Your email",
        validators=[
            DataRequired("Enter your email so we can send you the call link."),
            Email("Enter an email address like name@example.com."),
            Length(max=254),
        ],
    )
    note = TextAreaField(
        "Note to the seller (optional)",
        validators=[Optional(), Length(max=NOTE_MAX, message=f"Keep the note under {NOTE_MAX} characters.")],
    )
    # A fresh random key per rendered form: posting the same form twice (double click, back and
    # resubmit) finds the checkout created by the first post instead of making a second one.
    submission_key = HiddenField(validators=[DataRequired(), Length(min=16, max=64)])

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if not self.submission_key.data:
            self.submission_key.data = secrets.token_urlsafe(24)
