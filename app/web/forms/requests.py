"""The seller's accept and decline buttons on ``/requests`` (plain form posts: no JavaScript needed)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, TextAreaField
from wtforms.validators import Optional


class DecisionForm(FlaskForm):
    """The CSRF token, where to return after the post, for an accept the proposed start the
    seller picked (empty: for right now), and for a decline an optional message to the buyer,
    which goes into their email (its length is the lifecycle's rule, checked there)."""

    back = HiddenField(validators=[Optional()])
    start_at = HiddenField(validators=[Optional()])
    message = TextAreaField("Message to the buyer (optional)", validators=[Optional()])
