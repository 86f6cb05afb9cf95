"""The seller's accept and decline buttons on ``/requests`` (plain form posts: no JavaScript needed)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import Optional


class DecisionForm(FlaskForm):
    """Only the CSRF token and the list filter to return to after the post."""

    back = HiddenField(validators=[Optional()])
