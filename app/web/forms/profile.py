"""The seller's profile page forms: details, photo, and the pause switch."""

from __future__ import annotations

from decimal import Decimal

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, DecimalField, Field, HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, StopValidation

from app.services.profiles import BIO_MAX, DISPLAY_NAME_MAX, PRICE_MAX_CENTS, PRICE_MIN_CENTS, SLUG_MAX


def finite_price(form: FlaskForm, field: Field) -> None:
    """``Decimal`` reads "NaN", "sNaN" and "Infinity" too, and comparing a NaN raises: stop
    before the range check."""
    if isinstance(field.data, Decimal) and not field.data.is_finite():
        raise StopValidation("Enter the price as a number, like 25.00.")


class ProfileForm(FlaskForm):
    display_name = StringField(
        "Display name",
        validators=[DataRequired("Enter the name buyers will see."), Length(max=DISPLAY_NAME_MAX)],
    )
    slug = StringField(
        "Link",
        validators=[Optional(), Length(max=SLUG_MAX)],
        description="Lower-case letters, digits and hyphens. Leave empty to make one from your name. "
        "Changing it breaks links you have already shared.",
    )
    bio = TextAreaField(
        "Bio",
        validators=[Optional(), Length(max=BIO_MAX, message=f"Keep the bio to {BIO_MAX} characters or fewer.")],
        description=f"Plain text, up to {BIO_MAX} characters. Line breaks are kept.",
    )
    # Entered in major units (10.00); the service stores cents.
    price = DecimalField(
        "Price per call",
        places=2,
        validators=[
            InputRequired("Enter a price."),
            finite_price,
            NumberRange(
                min=Decimal(PRICE_MIN_CENTS) / 100,
                max=Decimal(PRICE_MAX_CENTS) / 100,
                message=f"The price must be between {PRICE_MIN_CENTS / 100:.2f} and {PRICE_MAX_CENTS / 100:,.2f}.",
            ),
        ],
    )
    paused = BooleanField("Not taking calls now", description="Your page stays up but buyers cannot book.")


class PhotoForm(FlaskForm):
    photo = FileField(
        "Photo",
        validators=[FileRequired("Choose a photo to upload.")],
        description="JPEG, PNG or WebP, up to 5 MB. It is cropped to a square.",
    )


class PauseForm(FlaskForm):
    paused = HiddenField(validators=[DataRequired()])


class EmptyForm(FlaskForm):
    """A button that only needs a CSRF token (remove photo)."""
