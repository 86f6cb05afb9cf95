"""The rules of a call at an agreed time: which start times a buyer may propose, until when a
pending request can be decided, when the room opens, when the reminders go.

Times are instants (aware datetimes, stored in UTC); a zone is only how a person reads them.
The JSON API takes ISO 8601 instants with their offset (``2026-12-08T14:00:00Z``); the paywall's
form sends a wall-clock time and the buyer's zone, read here with ``zoneinfo`` (``local_instant``):
a time that does not exist in that zone (the hour skipped when clocks go forward) is refused, and
a time that happens twice (the hour repeated when they go back) is the first of the two.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.config import Settings
from app.refusals import Invalid
from app.services.availability import Availability, within_hours

MAX_PROPOSALS = 3
# The seller needs a moment to see a request before its first proposed time.
MIN_LEAD = timedelta(minutes=30)
# A pending request with proposed times must be decided this long before the hold's
# capture_before: the capture (a task, right after the accept) needs time to run and retry.
CAPTURE_MARGIN = timedelta(hours=1)
# A reschedule may move the call at most this far ahead: the money is captured by then, so the
# card hold no longer limits it, but a call weeks away is a new call.
RESCHEDULE_HORIZON = timedelta(days=14)
# Reminders before a scheduled start, earliest first: (name, how long before).
REMINDERS: tuple[tuple[str, timedelta], ...] = (("24h", timedelta(hours=24)), ("10min", timedelta(minutes=10)))


@dataclass(frozen=True)
class ScheduleConfig:
    """The settings a scheduled call needs, as plain values (the last three make its emails:
    the parties' join links and the invitation's organizer)."""

    join_window: timedelta
    join_opens_before: timedelta
    cancel_notice: timedelta
    hold_window: timedelta
    call_duration: timedelta
    app_url: str = ""
    secret_key: str = ""
    email_from: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ScheduleConfig:
        return cls(
            join_window=timedelta(seconds=settings.join_window_seconds),
            join_opens_before=timedelta(seconds=settings.join_opens_before_seconds),
            cancel_notice=timedelta(seconds=settings.cancel_notice_seconds),
            hold_window=timedelta(seconds=settings.hold_window_seconds),
            call_duration=timedelta(seconds=settings.call_duration_seconds),
            app_url=settings.app_url,
            secret_key=settings.secret_key,
            email_from=settings.email_from,
        )


# --- Reading times -------------------------------------------------------------------------------


def parse_instant(value: object, *, field: str) -> datetime:
    """An ISO 8601 instant with its offset (``Z`` or ``+01:00``), in UTC. A time without an offset
    names no instant (whose 3 p.m.?), so it is refused."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    raise Invalid("bad_time", "Give times as ISO 8601 instants with an offset, like 2026-12-08T14:00:00Z.", field=field)


def parse_instants(values: object, *, field: str) -> list[datetime]:
    """``proposedStarts``: a list of at most MAX_PROPOSALS instants; None or [] means "as soon as possible"."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise Invalid("bad_time", "Send proposedStarts as a list of ISO 8601 instants.", field=field)
    if len(values) > MAX_PROPOSALS:
        raise Invalid("too_many_times", f"Propose at most {MAX_PROPOSALS} times.", field=field)
    return [parse_instant(value, field=field) for value in values]


def local_instant(wall_time: str, time_zone: str, *, field: str) -> datetime:
    """``2026-03-29T02:30`` read in ``time_zone`` (a page form's ``datetime-local``), in UTC.

    A wall time that does not exist there is refused rather than moved: the buyer meant a time
    that the clock never shows, and guessing could book the wrong hour. A repeated wall time is
    the first of the two (``fold=0``)."""
    try:
        naive = datetime.fromisoformat(wall_time.strip())
    except ValueError:
        raise Invalid("bad_time", "Pick a date and a time.", field=field) from None
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    zone = zoneinfo.ZoneInfo(time_zone)
    aware = naive.replace(tzinfo=zone, second=0, microsecond=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != aware.replace(tzinfo=None):
        raise Invalid(
            "time_does_not_exist",
            f"{naive:%H:%M} does not exist on {naive:%d %b %Y} in {time_zone}: the clocks change. Pick another time.",
            field=field,
        )
    return instant


# --- The rules ------------------------------------------------------------------------------------


def check_proposals(
    starts: Sequence[datetime], *, availability: Availability, now: datetime, config: ScheduleConfig, field: str
) -> list[datetime]:
    """The buyer's proposed starts, sorted and without repeats, each at least MIN_LEAD ahead,
    inside the card-hold window and with the whole call inside the seller's hours."""
    if not starts:
        return []
    if not availability.takes_bookings:
        raise Invalid("no_bookings", "This seller takes calls as soon as possible only.", field=field)
    chosen = sorted({start.astimezone(UTC).replace(microsecond=0) for start in starts})
    if len(chosen) > MAX_PROPOSALS:
        raise Invalid("too_many_times", f"Propose at most {MAX_PROPOSALS} times.", field=field)
    for start in chosen:
        if start < now + MIN_LEAD:
            raise Invalid("too_soon", "Propose times at least 30 minutes from now.", field=field)
        if start > now + config.hold_window:
            days = max(1, round(config.hold_window / timedelta(days=1)))
            raise Invalid("too_far", f"Propose times within the next {days} days.", field=field)
        if not within_hours(availability, start, config.call_duration):
            raise Invalid("outside_hours", "One of the times is outside the seller's hours.", field=field)
    return chosen


def pending_deadline(proposed: Sequence[datetime], *, capture_before: datetime | None) -> datetime:
    """Until when a request with proposed times can be accepted: its last proposed time, and
    before the hold can no longer be captured."""
    deadline = max(proposed)
    if capture_before is not None:
        deadline = min(deadline, capture_before - CAPTURE_MARGIN)
    return deadline


def join_opens(start: datetime, *, now: datetime, config: ScheduleConfig) -> datetime:
    """The room opens JOIN_OPENS_BEFORE_SECONDS before the start (at once if that has passed)."""
    return max(now, start - config.join_opens_before)


def first_reminder(start: datetime, *, now: datetime) -> datetime | None:
    """The first reminder still ahead at ``now`` (one already past is not sent late: the
    invitation just went out)."""
    due = [start - before for _, before in REMINDERS if start - before > now]
    return due[0] if due else None


def reminder_due(start: datetime, now: datetime) -> tuple[str | None, datetime | None]:
    """At ``now``, the reminder to send (the latest one due, so a sweep that fell behind sends one,
    not two) and when the next one is due."""
    name: str | None = None
    following: datetime | None = None
    for reminder, before in REMINDERS:
        if start - before <= now:
            name = reminder
        elif following is None:
            following = start - before
    return (name if start > now else None), following
