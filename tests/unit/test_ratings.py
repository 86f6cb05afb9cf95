"""The buyer's rating: 1 to 5 stars, once per completed call, and the summary the paywall shows."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.db import utcnow
from app.errors import refusal_status
from app.models import CancelReason, EventLog, Rating, RequestStatus
from app.refusals import Refusal
from app.services import ratings
from app.services.paywall import load_paywall
from tests.factories import ProfileFactory
from tests.trust_support import finished_call


class TestParseStars:
    @pytest.mark.parametrize(("value", "stars"), [("1", 1), (" 5 ", 5), (3, 3)])
    def test_whole_numbers_from_1_to_5(self, value: object, stars: int) -> None:
        assert ratings.parse_stars(value) == stars

    @pytest.mark.parametrize("value", [None, "", "0", "6", "-1", "4.5", 4.0, True, "five", [4], "05"])
    def test_anything_else_is_refused(self, value: object) -> None:
        with pytest.raises(Refusal) as refused:
            ratings.parse_stars(value)
        assert refusal_status(refused.value) == 422


class TestRateCall:
    def test_records_the_stars_for_the_seller_and_audits_without_the_buyer(self, db_session) -> None:
        call = finished_call(buyer_email="happy@example.org")
        rating = ratings.rate_call(db_session, call, 4, now=utcnow())

        assert (rating.stars, rating.seller_id, rating.call_request_id) == (4, call.seller_id, call.id)
        event = db_session.scalar(select(EventLog).where(EventLog.type == "rating.created"))
        assert (event.ref_id, event.actor, event.payload) == (str(call.id), "buyer", {"stars": 4, "comment": False})
        assert ratings.existing_rating(db_session, call.id).id == rating.id

    def test_only_once_per_call(self, db_session) -> None:
        call = finished_call()
        ratings.rate_call(db_session, call, 5, now=utcnow())
        with pytest.raises(Refusal) as again:
            ratings.rate_call(db_session, call, 1, now=utcnow())
        assert (refusal_status(again.value), again.value.code) == (409, "already_rated")
        assert db_session.scalars(select(Rating.stars)).all() == [5]

    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            (RequestStatus.ACCEPTED, None),
            (RequestStatus.PENDING, None),
            (RequestStatus.CANCELLED, CancelReason.SELLER_NO_SHOW),
            (RequestStatus.CANCELLED, CancelReason.BUYER_NO_SHOW),
        ],
    )
    def test_only_a_call_that_took_place(self, db_session, status, reason) -> None:
        call = finished_call(status=status, cancel_reason=reason)
        with pytest.raises(Refusal) as refused:
            ratings.rate_call(db_session, call, 5, now=utcnow())
        assert refused.value.code == "not_completed"
        assert db_session.scalar(select(func.count(Rating.id))) == 0

    @pytest.mark.parametrize("stars", [0, 6])
    def test_out_of_range_never_reaches_the_database(self, db_session, stars: int) -> None:
        with pytest.raises(Refusal):
            ratings.rate_call(db_session, finished_call(), stars, now=utcnow())


class TestSummary:
    def test_count_and_average_of_the_sellers_ratings_only(self, db_session) -> None:
        profile = ProfileFactory()
        for stars in (5, 4, 4):
            ratings.rate_call(db_session, finished_call(seller=profile.user), stars, now=utcnow())
        ratings.rate_call(db_session, finished_call(), 1, now=utcnow())  # another seller's

        assert ratings.rating_summary(db_session, profile.user_id) == ratings.RatingSummary(count=3, average=4.3)
        assert ratings.rating_summary(db_session, ProfileFactory().user_id) == ratings.RatingSummary(0, None)

    def test_the_paywall_reads_the_same_numbers(self, db_session) -> None:
        profile = ProfileFactory()
        for stars in (5, 4):
            ratings.rate_call(db_session, finished_call(seller=profile.user), stars, now=utcnow())
        view = load_paywall(db_session, profile.slug)
        assert (view.rating_count, view.shows_rating) == (2, False)  # fewer than three are not shown

        ratings.rate_call(db_session, finished_call(seller=profile.user), 3, now=utcnow())
        view = load_paywall(db_session, profile.slug)
        summary = ratings.rating_summary(db_session, profile.user_id)
        assert (view.rating_count, view.rating_average, view.shows_rating) == (summary.count, summary.average, True)
        assert summary.average == 4.0
