"""The paywall's read model (app/services/paywall.py): one query for the seller's page, with proof
(rating, completed calls, how fast they answer) shown only once there is enough of it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import utcnow
from app.models import Rating, RequestStatus
from app.services.paywall import ANSWERS_CONSIDERED, load_paywall
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory


def answered(profile, minutes: float, *, status=RequestStatus.ACCEPTED, ago_days: float = 1.0):  # type: ignore[no-untyped-def]
    created = utcnow() - timedelta(days=ago_days)
    decided = created + timedelta(minutes=minutes)
    values = {"accepted_at": decided} if status != RequestStatus.DECLINED else {"declined_at": decided}
    return CallRequestFactory(
        transaction=TransactionFactory(seller=profile.user), status=status, created_at=created, **values
    )


class TestLoadPaywall:
    def test_unknown_slug(self, db_session) -> None:
        assert load_paywall(db_session, "nobody-here") is None

    def test_reads_profile_seller_and_ratings(self, db_session) -> None:
        profile = ProfileFactory(slug="rated", paused=True)
        for stars in (5, 4, 4):
            request = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
            db_session.add(Rating(call_request_id=request.id, seller_id=profile.user_id, stars=stars))
        db_session.flush()
        view = load_paywall(db_session, "rated")
        assert view is not None
        assert (view.display_name, view.price_cents, view.unavailable_reason) == (profile.display_name, 1000, "paused")
        assert (view.rating_count, view.rating_average, view.shows_rating) == (3, 4.3, True)

    def test_a_new_seller_shows_no_proof(self, db_session) -> None:
        ProfileFactory(slug="fresh")
        view = load_paywall(db_session, "fresh")
        assert (view.rating_count, view.rating_average, view.shows_rating) == (0, None, False)
        assert (view.completed_calls, view.shows_calls, view.answers_within) == (0, False, None)


class TestCompletedCalls:
    def test_counted_from_three_and_only_the_sellers_completed_ones(self, db_session) -> None:
        profile = ProfileFactory(slug="busy")
        for status in (RequestStatus.COMPLETED, RequestStatus.COMPLETED, RequestStatus.DECLINED):
            CallRequestFactory(transaction=TransactionFactory(seller=profile.user), status=status)
        CallRequestFactory(status=RequestStatus.COMPLETED)  # another seller's
        view = load_paywall(db_session, "busy")
        assert (view.completed_calls, view.shows_calls) == (2, False)
        CallRequestFactory(transaction=TransactionFactory(seller=profile.user), status=RequestStatus.COMPLETED)
        assert load_paywall(db_session, "busy").shows_calls is True


class TestAnswerTime:
    @pytest.mark.parametrize(
        ("minutes", "words"),
        [
            ((5, 10, 12), "within 15 minutes"),
            ((5, 40, 50), "within an hour"),
            ((30, 90, 170), "within a few hours"),
            ((60, 300, 900), "within a day"),
            ((1500, 1600, 1700), None),  # slower than a day says nothing
        ],
    )
    def test_the_median_of_the_latest_answers(self, db_session, minutes, words) -> None:
        profile = ProfileFactory(slug="answers")
        for n, m in enumerate(minutes):
            answered(profile, m, status=RequestStatus.DECLINED if n == 0 else RequestStatus.ACCEPTED)
        assert load_paywall(db_session, "answers").answers_within == words

    def test_needs_three_answers(self, db_session) -> None:
        profile = ProfileFactory(slug="two")
        answered(profile, 5)
        answered(profile, 5)
        CallRequestFactory(transaction=TransactionFactory(seller=profile.user))  # still pending: not an answer
        assert load_paywall(db_session, "two").answers_within is None

    def test_only_the_latest_answers_count(self, db_session) -> None:
        profile = ProfileFactory(slug="improved")
        for _ in range(ANSWERS_CONSIDERED):
            answered(profile, 10, ago_days=1)
        for _ in range(ANSWERS_CONSIDERED):
            answered(profile, 2000, ago_days=100)  # slow, long ago
        assert load_paywall(db_session, "improved").answers_within == "within 15 minutes"
