"""Forms of the balance page and the admin payouts queue."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DecimalField, HiddenField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, StopValidation


def finite(form: FlaskForm, field: DecimalField) -> None:
    """``NaN`` and ``Infinity`` parse as decimals but are not amounts (and cannot be compared)."""
    if field.data is not None and not field.data.is_finite():
        raise StopValidation("Enter an amount like 25.00.")


class PayoutRequestForm(FlaskForm):
    """The amount is typed in the currency's major unit (``25.50``) and sent to the service in cents."""

    amount = DecimalField(
        "Amount",
        places=2,
        validators=[InputRequired("Enter an amount."), finite, NumberRange(min=0, message="Enter a positive amount.")],
    )
    next = HiddenField(validators=[Optional()])


class ProcessPayoutForm(FlaskForm):
    reference = StringField(
        "Transfer reference",
        validators=[DataRequired("Enter the transfer reference."), Length(max=200)],
    )


class RejectPayoutForm(FlaskForm):
    reason = StringField(
        "Reason",
        validators=[DataRequired("Enter a reason the seller will read."), Length(max=500)],
    )
