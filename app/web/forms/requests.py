"""The seller's accept and decline buttons on ``/requests`` (plain form posts: no JavaScript needed)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, TextAreaField
from wtforms.validators import Optional


class DecisionForm(FlaskForm):
    """The CSRF token, where to return after the post, and (to decline) an optional message to
    the buyer, which goes into their email. Its length is the lifecycle's rule, checked there."""

    back = HiddenField(validators=[Optional()])
    message = TextAreaField("Message to the buyer (optional)", validators=[Optional()])
