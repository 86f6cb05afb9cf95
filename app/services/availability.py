"""When a seller takes calls: weekly hours in their own time zone, and an "available now" switch.

Hours are wall-clock times in the seller's IANA zone (``Europe/Paris``), so "Mondays 09:00-17:00"
stays 09:00-17:00 for the seller across daylight-saving changes while its instant in UTC moves.
Every instant is worked out with ``zoneinfo`` day by day (``windows``), never by adding a fixed
offset. A local time that does not exist (the hour skipped when clocks go forward) is read with
the offset in force before the change, as ``zoneinfo`` does; a window is an interval, so it
simply starts at the first real minute.

The switch is on until ``available_now_until``; switching it on, and the seller's dashboard while
it is open, push that ``AVAILABLE_NOW_IDLE_SECONDS`` ahead, so it turns itself off once the seller
has gone idle. Nothing has to run for that: the time passing is the "off".
"""

from __future__ import annotations

import functools
import itertools
import re
import uuid
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.formats import iso
from app.models import SellerAvailability
from app.refusals import Invalid

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_WINDOWS = 21  # three a day is plenty for real people; the list is shown on every paywall
DAY_MINUTES = 24 * 60
_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
# The paywall looks this far ahead for the next window (a week, plus the day the zones may shift).
LOOKAHEAD = timedelta(days=8)
# A heartbeat moves the switch's end only when it would move it by more than this: a dashboard
# polling every few seconds writes once a minute, not twelve times.
HEARTBEAT_STEP = timedelta(seconds=60)


@dataclass(frozen=True, order=True)
class WeeklyWindow:
    """One window of the week: ``day`` 0 = Monday; minutes after local midnight, ``end`` up to 1440."""

    day: int
    start: int
    end: int

    def to_json(self) -> dict[str, str]:
        return {"day": DAYS[self.day], "from": _clock(self.start), "to": _clock(self.end)}


@dataclass(frozen=True)
class Availability:
    time_zone: str
    weekly: tuple[WeeklyWindow, ...]
    available_now_until: datetime | None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def takes_bookings(self) -> bool:
        """Buyers may propose times only to a seller who has said when they take calls."""
        return bool(self.weekly)

    def available_now(self, now: datetime) -> bool:
        return self.available_now_until is not None and self.available_now_until > now

    def to_json(self, now: datetime) -> dict[str, Any]:
        """``GET /api/availability``: times of day in the seller's zone, the switch's state."""
        return {
            "timeZone": self.time_zone,
            "weekly": [window.to_json() for window in self.weekly],
            "availableNow": self.available_now(now),
            "availableNowUntil": iso(self.available_now_until) if self.available_now(now) else None,
        }


# --- Time zones --------------------------------------------------------------------------------


@functools.cache
def time_zone_names() -> tuple[str, ...]:
    """The IANA zones people pick from: ``Area/City`` names and ``UTC`` (not the legacy aliases
    such as ``EST5EDT`` or ``posixrules``), sorted."""
    names = {
        name for name in zoneinfo.available_timezones() if "/" in name and not name.startswith(("Etc/", "SystemV/"))
    }
    return ("UTC", *sorted(names))


def check_time_zone(name: object, *, field: str = "timeZone") -> str:
    """``name`` if it is an IANA zone this server knows; ``Invalid`` otherwise."""
    if isinstance(name, str) and (name in _known_zones()):
        return name
    raise Invalid("bad_time_zone", "Choose a time zone such as Europe/Paris or America/New_York.", field=field)


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


# --- Reading and saving -----------------------------------------------------------------------


def parse_weekly(items: object, *, field: str = "weekly") -> tuple[WeeklyWindow, ...]:
    """``[{"day": "mon", "from": "09:00", "to": "17:00"}, ...]`` → sorted windows. Refuses an
    unknown day, a malformed time, an empty or reversed window, overlaps and more than
    MAX_WINDOWS, naming the first problem."""
    if not isinstance(items, list):
        raise Invalid("bad_hours", 'Send weekly as a list of {"day", "from", "to"}.', field=field)
    if len(items) > MAX_WINDOWS:
        raise Invalid("bad_hours", f"Keep to {MAX_WINDOWS} windows a week.", field=field)
    windows = sorted(_window(item, field) for item in items)
    for before, after in itertools.pairwise(windows):
        if before.day == after.day and after.start < before.end:
            raise Invalid("bad_hours", f"Two windows overlap on {DAYS[after.day]}.", field=field)
    return tuple(windows)


def load_availability(session: Session, seller_id: uuid.UUID) -> Availability:
    """The seller's availability; a seller who never set it takes calls "as soon as possible" only."""
    row = session.scalar(select(SellerAvailability).where(SellerAvailability.seller_id == seller_id))
    if row is None:
        return Availability("UTC", (), None)
    return Availability(row.time_zone, parse_weekly(row.weekly), row.available_now_until)


def save_availability(
    session: Session,
    seller_id: uuid.UUID,
    *,
    now: datetime,
    idle_seconds: int,
    time_zone: str | None = None,
    weekly: Sequence[WeeklyWindow] | None = None,
    available_now: bool | None = None,
) -> Availability:
    """Change the seller's availability; None keeps a part as it is. One upsert, so two tabs
    saving at once leave one of them whole. Switching "available now" on (again) starts a new
    idle period."""
    current = load_availability(session, seller_id)
    if available_now is None:
        until = current.available_now_until if current.available_now(now) else None
    else:
        until = now + timedelta(seconds=idle_seconds) if available_now else None
    chosen = tuple(weekly) if weekly is not None else current.weekly
    values = {
        "time_zone": check_time_zone(time_zone) if time_zone is not None else current.time_zone,
        "weekly": [window.to_json() for window in chosen],
        "available_now_until": until,
        "updated_at": now,
    }
    session.execute(
        insert(SellerAvailability)
        .values(id=uuid.uuid4(), seller_id=seller_id, created_at=now, **values)
        .on_conflict_do_update(index_elements=["seller_id"], set_=values)
    )
    return Availability(str(values["time_zone"]), chosen, until)


def keep_available(session: Session, seller_id: uuid.UUID, *, now: datetime, idle_seconds: int) -> bool:
    """The seller is around (their dashboard is open): a switch still on stays on for another
    idle period. A switch that already turned itself off stays off. True when it moved."""
    until = now + timedelta(seconds=idle_seconds)
    moved = session.execute(
        update(SellerAvailability)
        .where(
            SellerAvailability.seller_id == seller_id,
            SellerAvailability.available_now_until > now,
            SellerAvailability.available_now_until < until - HEARTBEAT_STEP,
        )
        .values(available_now_until=until)
        .returning(SellerAvailability.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return moved is not None


# --- Windows as instants ------------------------------------------------------------------------


def windows(availability: Availability, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The seller's hours between ``start`` and ``end`` as UTC intervals, merged where they touch
    (Monday until 24:00 and Tuesday from 00:00 are one evening), clipped to ``[start, end]``."""
    zone = availability.zone
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    found: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        for window in availability.weekly:
            if window.day == day.weekday():
                found.append((_instant(day, window.start, zone), _instant(day, window.end, zone)))
        day += timedelta(days=1)
    merged: list[tuple[datetime, datetime]] = []
    for begin, finish in sorted(found):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
        else:
            merged.append((begin, finish))
    return [(max(b, start), min(f, end)) for b, f in merged if f > start and b < end and min(f, end) > max(b, start)]


def within_hours(availability: Availability, start_at: datetime, duration: timedelta) -> bool:
    """Whether the whole call, ``start_at`` to ``start_at + duration``, falls in the seller's hours."""
    finish = start_at + duration
    return any(b <= start_at and finish <= f for b, f in windows(availability, start_at - duration, finish + duration))


def next_window(availability: Availability, now: datetime) -> tuple[datetime, datetime] | None:
    """The window the seller is in now (from now) or the next one, within LOOKAHEAD."""
    upcoming = windows(availability, now, now + LOOKAHEAD)
    return upcoming[0] if upcoming else None


# --- Helpers -------------------------------------------------------------------------------------


def _window(item: object, field: str) -> WeeklyWindow:
    if not isinstance(item, dict) or item.get("day") not in DAYS:
        raise Invalid("bad_hours", f"Each window needs a day: one of {', '.join(DAYS)}.", field=field)
    start, end = _minutes(item.get("from"), field), _minutes(item.get("to"), field)
    if start >= DAY_MINUTES or end <= start:
        raise Invalid("bad_hours", f"On {item['day']}, “to” must come after “from” (24:00 at the latest).", field=field)
    return WeeklyWindow(DAYS.index(str(item["day"])), start, end)


def _minutes(value: object, field: str) -> int:
    match = _CLOCK.match(value) if isinstance(value, str) else None
    minutes = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
    if not 0 <= minutes <= DAY_MINUTES:
        raise Invalid("bad_hours", "Write times as HH:MM, from 00:00 to 24:00.", field=field)
    return minutes


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _instant(day: date, minutes: int, zone: zoneinfo.ZoneInfo) -> datetime:
    """``day`` at ``minutes`` past local midnight in ``zone``, in UTC (24:00 is the next midnight)."""
    if minutes >= DAY_MINUTES:
        day, minutes = day + timedelta(days=1), minutes - DAY_MINUTES
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(UTC)
