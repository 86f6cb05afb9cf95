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
from app.models.calls import COMMENT_MAX
from app.refusals import Conflict, Invalid
from app.services.audit import record_event
from app.services.calls import rate_url

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


def clean_comment(value: object) -> str:
    """The buyer's optional words with the stars: trimmed, at most COMMENT_MAX characters."""
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > COMMENT_MAX:
        raise Invalid("too_long", f"Keep the comment under {COMMENT_MAX} characters.", field="comment")
    return text


def rate_call(session: Session, call_request: CallRequest, stars: int, *, now: datetime, comment: str = "") -> Rating:
    """Record the buyer's rating of ``call_request`` (already authorised by the caller), with an
    optional comment that only the seller reads.

    Raises ``Conflict`` ``not_completed`` when the call has not taken place and
    ``already_rated`` when this call was rated before.
    """
    if stars not in STARS:
        raise Invalid("invalid", "Choose from 1 to 5 stars.")
    comment = clean_comment(comment)
    if call_request.status != RequestStatus.COMPLETED:
        raise Conflict("not_completed", "You can rate a call once it has taken place.")
    rating_id = session.execute(
        insert(Rating)
        .values(
            id=uuid.uuid4(),
            call_request_id=call_request.id,
            seller_id=call_request.seller_id,
            stars=stars,
            comment=comment,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["call_request_id"])
        .returning(Rating.id)
    ).scalar_one_or_none()
    if rating_id is None:
        raise Conflict("already_rated", "You have already rated this call. Thank you!")
    payload = {"stars": stars, "comment": bool(comment)}  # the words stay in the ratings table
    record_event(session, "rating.created", ref_id=call_request.id, actor="buyer", payload=payload)
    return session.get_one(Rating, rating_id)


@dataclass(frozen=True)
class BuyerRating:
    """The rating form where the buyer already is (the end screen, the status page)."""

    url: str | None  # where the buyer rates this call, while they have not
    stars: int | None  # what they gave, once they have


def buyer_rating(session: Session, call: CallRequest, party: str, *, app_url: str, secret_key: str) -> BuyerRating:
    """For the buyer of a call that took place: the link to rate it, or the stars they gave."""
    if party != "buyer" or call.status != RequestStatus.COMPLETED:
        return BuyerRating(url=None, stars=None)
    stars = session.scalar(select(Rating.stars).where(Rating.call_request_id == call.id))
    return BuyerRating(url=None if stars else rate_url(app_url, secret_key, call), stars=stars)


def rating_summary(session: Session, seller_id: uuid.UUID) -> RatingSummary:
    """Count and average of the seller's ratings (what the paywall shows from three ratings on)."""
    count, average = session.execute(
        select(func.count(Rating.id), func.avg(Rating.stars)).where(Rating.seller_id == seller_id)
    ).one()
    return RatingSummary(count=int(count), average=round(float(average), 1) if average is not None else None)


@dataclass(frozen=True)
class ReceivedRating:
    """One rating as its seller sees it on the dashboard."""

    stars: int
    comment: str
    buyer_email: str
    created_at: datetime
    call_ended_at: datetime | None


def recent_ratings(session: Session, seller_id: uuid.UUID, *, limit: int = 5) -> list[ReceivedRating]:
    """The seller's newest ratings, each with its comment and whose call it was."""
    rows = session.execute(
        select(Rating.stars, Rating.comment, Rating.created_at, CallRequest.buyer_email, CallRequest.ended_at)
        .join(CallRequest, CallRequest.id == Rating.call_request_id)
        .where(Rating.seller_id == seller_id)
        .order_by(Rating.created_at.desc())
        .limit(limit)
    ).all()
    return [
        ReceivedRating(
            stars=row.stars,
            comment=row.comment,
            buyer_email=row.buyer_email,
            created_at=row.created_at,
            call_ended_at=row.ended_at,
        )
        for row in rows
    ]
