"""The buyer's 1-5 star rating of a call that took place, once per call, with no account.

The buyer proves who they are with their join credential (the ``t`` of their call link), checked
by ``app.services.safety.buyer_call``. One rating per call is a UNIQUE constraint and the insert
is ON CONFLICT DO NOTHING, so a double click or two tabs rate once and the second hears 409.
The paywall shows the average and count once there are RATINGS_SHOWN_FROM of them
(``app.services.profiles.load_paywall`` reads the same ``ratings.seller_id`` aggregate as
``rating_summary`` below).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import CallRequest, Rating, RequestStatus
from app.refusals import Conflict, Invalid
from app.services.audit import record_event

STARS = range(1, 6)


@dataclass(frozen=True)
class RatingSummary:
    count: int
    average: float | None  # one decimal; None without ratings


def parse_stars(value: object) -> int:
    """``"4"`` or ``4`` → 4; anything but a whole number from 1 to 5 is a 422."""
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if text not in {str(stars) for stars in STARS}:
        raise Invalid("invalid", "Choose from 1 to 5 stars.")
    return int(text)


def existing_rating(session: Session, request_id: uuid.UUID) -> Rating | None:
    return session.scalar(select(Rating).where(Rating.call_request_id == request_id))


def rate_call(session: Session, call_request: CallRequest, stars: int, *, now: datetime) -> Rating:
    """Record the buyer's rating of ``call_request`` (already authorised by the caller).

    Raises ``Conflict`` ``not_completed`` when the call has not taken place and
    ``already_rated`` when this call was rated before.
    """
    if stars not in STARS:
        raise Invalid("invalid", "Choose from 1 to 5 stars.")
    if call_request.status != RequestStatus.COMPLETED:
        raise Conflict("not_completed", "You can rate a call once it has taken place.")
    rating_id = session.execute(
        insert(Rating)
        .values(
            id=uuid.uuid4(),
            call_request_id=call_request.id,
            seller_id=call_request.seller_id,
            stars=stars,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["call_request_id"])
        .returning(Rating.id)
    ).scalar_one_or_none()
    if rating_id is None:
        raise Conflict("already_rated", "You have already rated this call. Thank you!")
    record_event(session, "rating.created", ref_id=call_request.id, actor="buyer", payload={"stars": stars})
    return session.get_one(Rating, rating_id)


def rating_summary(session: Session, seller_id: uuid.UUID) -> RatingSummary:
    """Count and average of the seller's ratings (what the paywall shows from three ratings on)."""
    count, average = session.execute(
        select(func.count(Rating.id), func.avg(Rating.stars)).where(Rating.seller_id == seller_id)
    ).one()
    return RatingSummary(count=int(count), average=round(float(average), 1) if average is not None else None)
