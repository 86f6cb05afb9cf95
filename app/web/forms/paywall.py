"""The buyer's form on a seller's paywall (``/u/<slug>``)."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

from app.refusals import Invalid
from app.services.availability import check_time_zone
from app.services.scheduling import MAX_PROPOSALS, local_instant

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
    # When: right away (the flow as it always was) or up to three proposed starts, written as
    # wall-clock times (``datetime-local``) in the zone the buyer picked (their browser's by default).
    # "now" (also when absent: the form as it always was) or "later"; the page draws the radios.
    when = StringField("When", default="now", validators=[Optional(), Length(max=8)])
    time_zone = StringField("Your time zone", validators=[Optional(), Length(max=64)])
    proposed_1 = StringField("First choice", validators=[Optional(), Length(max=32)])
    proposed_2 = StringField("Second choice (optional)", validators=[Optional(), Length(max=32)])
    proposed_3 = StringField("Third choice (optional)", validators=[Optional(), Length(max=32)])
    # A fresh random key per rendered form: posting the same form twice (double click, back and
    # resubmit) finds the checkout created by the first post instead of making a second one.
    submission_key = HiddenField(validators=[DataRequired(), Length(min=16, max=64)])

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if not self.submission_key.data:
            self.submission_key.data = secrets.token_urlsafe(24)

    def proposals(self) -> tuple[str | None, list[datetime]]:
        """(the buyer's zone, the proposed instants); no instants for "as soon as possible".
        Raises ``Invalid`` for a zone or a time the rules refuse."""
        zone = check_time_zone(self.time_zone.data, field="time_zone") if self.time_zone.data else None
        if self.when.data != "later":
            return zone, []
        if zone is None:
            raise Invalid("bad_time_zone", "Choose your time zone.", field="time_zone")
        fields = (self.proposed_1, self.proposed_2, self.proposed_3)[:MAX_PROPOSALS]
        starts = [local_instant(f.data, zone, field=f.name) for f in fields if f.data]
        if not starts:
            raise Invalid("no_time", "Pick at least one time, or choose “As soon as possible”.", field="proposed_1")
        return zone, starts
