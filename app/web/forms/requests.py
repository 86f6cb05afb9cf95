"""The seller's accept and decline buttons on ``/requests`` (plain form posts: no JavaScript needed)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import Optional


class DecisionForm(FlaskForm):
    """The CSRF token, the list filter to return to after the post, and for an accept, the
    proposed start the seller picked (empty: for right now)."""

    back = HiddenField(validators=[Optional()])
    start_at = HiddenField(validators=[Optional()])
