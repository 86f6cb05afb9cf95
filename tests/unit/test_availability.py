"""A seller's weekly hours in their own zone (across daylight-saving changes), the "available now"
switch that turns itself off, and the rules for a buyer's proposed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.formats import format_when
from app.refusals import Invalid
from app.services.availability import (
    Availability,
    keep_available,
    load_availability,
    next_window,
    parse_weekly,
    save_availability,
    windows,
    within_hours,
)
from app.services.scheduling import (
    ScheduleConfig,
    check_proposals,
    first_reminder,
    local_instant,
    parse_instant,
    parse_instants,
    pending_deadline,
    reminder_due,
)
from tests.factories import UserFactory


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(zone: str, *items: tuple[str, str, str]) -> Availability:
    return Availability(zone, parse_weekly([{"day": d, "from": f, "to": t} for d, f, t in items]), None)


CONFIG = ScheduleConfig(
    join_window=timedelta(minutes=15),
    join_opens_before=timedelta(minutes=5),
    cancel_notice=timedelta(hours=24),
    hold_window=timedelta(days=6),
    call_duration=timedelta(minutes=5),
)


class TestWeeklyHours:
    def test_parsed_sorted_and_written_back_the_same(self) -> None:
        weekly = parse_weekly(
            [{"day": "tue", "from": "14:00", "to": "24:00"}, {"day": "mon", "from": "09:00", "to": "12:30"}]
        )
        assert [w.to_json() for w in weekly] == [
            {"day": "mon", "from": "09:00", "to": "12:30"},
            {"day": "tue", "from": "14:00", "to": "24:00"},
        ]

    @pytest.mark.parametrize(
        "items",
        [
            "mon 9-5",
            [{"day": "monday", "from": "09:00", "to": "17:00"}],
            [{"day": "mon", "from": "9:00", "to": "17:00"}],
            [{"day": "mon", "from": "17:00", "to": "09:00"}],
            [{"day": "mon", "from": "09:00", "to": "09:00"}],
            [{"day": "mon", "from": "24:00", "to": "24:00"}],
            [{"day": "mon", "from": "09:00", "to": "24:30"}],
            [{"day": "mon", "from": "09:00", "to": "12:00"}, {"day": "mon", "from": "11:00", "to": "13:00"}],
            [{"day": "mon", "from": "00:00", "to": "00:30"}] * 22,
        ],
    )
    def test_refused_with_the_field_named(self, items: object) -> None:
        with pytest.raises(Invalid) as refused:
            parse_weekly(items)
        assert refused.value.fields == {"weekly": refused.value.message}


class TestWindowsInstants:
    def test_local_hours_keep_their_wall_clock_across_the_spring_change(self) -> None:
        # Europe/Paris moves from +01:00 to +02:00 on Sunday 29 March 2026.
        paris = hours("Europe/Paris", ("sat", "09:00", "17:00"), ("mon", "09:00", "17:00"))
        found = windows(paris, utc(2026, 3, 28), utc(2026, 3, 31))
        assert found == [(utc(2026, 3, 28, 8), utc(2026, 3, 28, 16)), (utc(2026, 3, 30, 7), utc(2026, 3, 30, 15))]

    def test_the_autumn_change_in_new_york(self) -> None:
        # America/New_York goes from -04:00 to -05:00 on Sunday 1 November 2026.
        new_york = hours("America/New_York", ("sat", "09:00", "10:00"), ("sun", "09:00", "10:00"))
        found = windows(new_york, utc(2026, 10, 31), utc(2026, 11, 2))
        assert found == [(utc(2026, 10, 31, 13), utc(2026, 10, 31, 14)), (utc(2026, 11, 1, 14), utc(2026, 11, 1, 15))]

    def test_a_window_over_the_skipped_hour_starts_at_the_first_real_minute(self) -> None:
        # 02:00-04:00 on 29 March 2026 in Paris: 02:00-03:00 never happens; 04:00 is 02:00 UTC.
        paris = hours("Europe/Paris", ("sun", "02:00", "04:00"))
        [(begin, end)] = windows(paris, utc(2026, 3, 29), utc(2026, 3, 30))
        assert end == utc(2026, 3, 29, 2)
        assert begin == utc(2026, 3, 29, 1)  # read with the winter offset, i.e. 03:00 summer time
        assert begin.astimezone(paris.zone).hour == 3

    def test_midnight_windows_join_and_results_are_clipped(self) -> None:
        evening = hours("UTC", ("mon", "20:00", "24:00"), ("tue", "00:00", "02:00"))
        assert windows(evening, utc(2026, 12, 7, 21), utc(2026, 12, 8, 1)) == [
            (utc(2026, 12, 7, 21), utc(2026, 12, 8, 1))
        ]

    def test_a_call_must_fit_whole(self) -> None:
        paris = hours("Europe/Paris", ("tue", "09:00", "10:00"))  # 08:00-09:00 UTC in December
        five = timedelta(minutes=5)
        assert within_hours(paris, utc(2026, 12, 8, 8), five)
        assert within_hours(paris, utc(2026, 12, 8, 8, 55), five)
        assert not within_hours(paris, utc(2026, 12, 8, 8, 56), five)
        assert not within_hours(paris, utc(2026, 12, 8, 7, 59), five)
        assert not within_hours(paris, utc(2026, 12, 9, 8), five)  # a Wednesday

    def test_next_window_is_the_current_one_from_now(self) -> None:
        paris = hours("Europe/Paris", ("tue", "09:00", "17:00"))
        assert next_window(paris, utc(2026, 12, 8, 10)) == (utc(2026, 12, 8, 10), utc(2026, 12, 8, 16))
        assert next_window(paris, utc(2026, 12, 8, 17)) == (utc(2026, 12, 15, 8), utc(2026, 12, 15, 16))
        assert next_window(Availability("UTC", (), None), utc(2026, 12, 8)) is None


class TestSwitch:
    def test_saved_partially_and_turns_itself_off(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        now = utc(2026, 12, 8, 9)
        save_availability(db_session, seller.id, now=now, idle_seconds=1800, time_zone="Asia/Tokyo", available_now=True)
        save_availability(db_session, seller.id, now=now, idle_seconds=1800, weekly=parse_weekly([]))
        saved = load_availability(db_session, seller.id)
        assert saved.time_zone == "Asia/Tokyo"  # a partial save keeps the rest
        assert saved.available_now(now + timedelta(minutes=29))
        assert not saved.available_now(now + timedelta(minutes=30))

    def test_the_heartbeat_keeps_it_on_but_never_turns_it_back_on(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        now = utc(2026, 12, 8, 9)
        save_availability(db_session, seller.id, now=now, idle_seconds=1800, available_now=True)
        assert not keep_available(db_session, seller.id, now=now + timedelta(seconds=30), idle_seconds=1800)
        assert keep_available(db_session, seller.id, now=now + timedelta(minutes=20), idle_seconds=1800)
        assert load_availability(db_session, seller.id).available_now(now + timedelta(minutes=49))
        late = now + timedelta(hours=2)
        assert not keep_available(db_session, seller.id, now=late, idle_seconds=1800)
        assert not load_availability(db_session, seller.id).available_now(late)

    def test_an_unknown_zone_is_refused(self, db_session) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(Invalid) as refused:
            save_availability(
                db_session, UserFactory().id, now=utc(2026, 12, 8), idle_seconds=60, time_zone="Mars/Olympus"
            )
        assert refused.value.fields == {"timeZone": refused.value.message}


class TestTimes:
    def test_instants_need_an_offset(self) -> None:
        assert parse_instant("2026-12-08T15:00:00+01:00", field="x") == utc(2026, 12, 8, 14)
        assert parse_instant("2026-12-08T14:00:00Z", field="x") == utc(2026, 12, 8, 14)
        for bad in ("2026-12-08T14:00:00", "tomorrow", 1733666400, None):
            with pytest.raises(Invalid):
                parse_instant(bad, field="x")
        with pytest.raises(Invalid, match="at most 3"):
            parse_instants(["2026-12-08T14:00:00Z"] * 4, field="proposedStarts")
        assert parse_instants(None, field="proposedStarts") == []

    def test_a_wall_time_that_does_not_exist_is_refused(self) -> None:
        with pytest.raises(Invalid, match="does not exist"):
            local_instant("2026-03-29T02:30", "Europe/Paris", field="proposed_1")

    def test_a_repeated_wall_time_is_the_first_one(self) -> None:
        # 01:30 happens twice in New York on 1 November 2026: first at -04:00.
        assert local_instant("2026-11-01T01:30", "America/New_York", field="p") == utc(2026, 11, 1, 5, 30)

    def test_a_time_proposed_across_the_change_lands_on_the_right_instant(self) -> None:
        # 10:00 in Paris is 09:00 UTC the day before the spring change and 08:00 UTC the day after.
        assert local_instant("2026-03-28T10:00", "Europe/Paris", field="p") == utc(2026, 3, 28, 9)
        assert local_instant("2026-03-30T10:00", "Europe/Paris", field="p") == utc(2026, 3, 30, 8)
        assert format_when(utc(2026, 3, 30, 8), "Europe/Paris") == "Monday 30 March 2026, 10:00 (Europe/Paris)"
        assert format_when(utc(2026, 3, 30, 8), "America/New_York") == "Monday 30 March 2026, 04:00 (America/New_York)"


class TestProposals:
    seller = hours("Europe/Paris", ("mon", "09:00", "17:00"), ("tue", "09:00", "17:00"))
    now = utc(2026, 12, 7, 7)  # Monday 08:00 in Paris

    def check(self, *starts: datetime) -> list[datetime]:
        return check_proposals(starts, availability=self.seller, now=self.now, config=CONFIG, field="proposedStarts")

    def test_sorted_without_repeats(self) -> None:
        assert self.check(utc(2026, 12, 8, 9), utc(2026, 12, 7, 9), utc(2026, 12, 8, 9)) == [
            utc(2026, 12, 7, 9),
            utc(2026, 12, 8, 9),
        ]
        assert self.check() == []

    @pytest.mark.parametrize(
        ("start", "code"),
        [
            (utc(2026, 12, 7, 7, 20), "too_soon"),  # inside 30 minutes
            (utc(2026, 12, 14, 9), "too_far"),  # past the hold window (6 days)
            (utc(2026, 12, 9, 9), "outside_hours"),  # a Wednesday
            (utc(2026, 12, 7, 15, 58), "outside_hours"),  # ends after 17:00 Paris
        ],
    )
    def test_each_rule(self, start: datetime, code: str) -> None:
        with pytest.raises(Invalid) as refused:
            self.check(start)
        assert refused.value.code == code and "proposedStarts" in refused.value.fields

    def test_a_seller_without_hours_takes_asap_only(self) -> None:
        with pytest.raises(Invalid) as refused:
            check_proposals(
                [utc(2026, 12, 8, 9)],
                availability=Availability("UTC", (), None),
                now=self.now,
                config=CONFIG,
                field="proposedStarts",
            )
        assert refused.value.code == "no_bookings"

    def test_pending_until_the_last_time_or_the_hold(self) -> None:
        proposed = [utc(2026, 12, 8, 9), utc(2026, 12, 12, 9)]
        assert pending_deadline(proposed, capture_before=None) == utc(2026, 12, 12, 9)
        assert pending_deadline(proposed, capture_before=utc(2026, 12, 11, 12)) == utc(2026, 12, 11, 11)

    def test_reminders(self) -> None:
        start = utc(2026, 12, 8, 9)
        assert first_reminder(start, now=utc(2026, 12, 1)) == utc(2026, 12, 7, 9)
        assert first_reminder(start, now=utc(2026, 12, 8, 1)) == utc(2026, 12, 8, 8, 50)
        assert first_reminder(start, now=utc(2026, 12, 8, 8, 55)) is None
        assert reminder_due(start, utc(2026, 12, 7, 9)) == ("24h", utc(2026, 12, 8, 8, 50))
        assert reminder_due(start, utc(2026, 12, 8, 8, 51)) == ("10min", None)  # never both
        assert reminder_due(start, utc(2026, 12, 8, 9)) == (None, None)
