"""The calendar invitation of a scheduled call, read back by icalendar and by a second,
independent parser (vobject): one UID for the call's whole life, DTSTART as a UTC instant, the
SEQUENCE of each version, METHOD REQUEST or CANCEL, the MIME method matching; no join link."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import icalendar
import pytest
import vobject

from app.services.invites import build_ics, calendar_links, ics_attachment, invite_context, invite_for

START = datetime(2026, 12, 8, 14, 0, tzinfo=UTC)


def invite(sequence: int = 0, method: str = "REQUEST", start: datetime = START):  # type: ignore[no-untyped-def]
    return invite_for(
        request_id="3f1c2e0a-0000-4000-8000-000000000001",
        app_url="https://chatlink.example/",
        email_from="ChatLink <no-reply@chatlink.example>",
        attendee="buyer@example.org",
        sequence=sequence,
        method=method,
        start=start,
        end=start + timedelta(minutes=5),
        other_name='Ada "The Count", Lovelace; PhD',
        stamp=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
    )


def read_both(data: bytes) -> tuple[icalendar.Calendar, vobject.base.Component]:
    return icalendar.Calendar.from_ical(data), vobject.readOne(data.decode("utf-8"))


@pytest.mark.parametrize(("sequence", "method"), [(0, "REQUEST"), (1, "REQUEST"), (2, "CANCEL")])
def test_both_parsers_read_the_same_event(sequence: int, method: str) -> None:
    data = build_ics(invite(sequence, method))
    calendar, other = read_both(data)
    [event] = calendar.walk("VEVENT")

    assert str(calendar["METHOD"]) == method == other.method.value
    assert str(event["UID"]) == "call-3f1c2e0a-0000-4000-8000-000000000001@chatlink.example" == other.vevent.uid.value
    assert int(event["SEQUENCE"]) == sequence == int(other.vevent.sequence.value)
    assert event.decoded("DTSTART") == START == other.vevent.dtstart.value
    assert event.decoded("DTSTART").utcoffset() == timedelta(0)
    assert other.vevent.dtend.value == START + timedelta(minutes=5)
    assert b"DTSTART:20261208T140000Z" in data  # a UTC instant, no TZID to resolve
    assert str(event["STATUS"]) == ("CANCELLED" if method == "CANCEL" else "CONFIRMED")
    assert str(event["ATTENDEE"]) == "mailto:buyer@example.org"
    # Escaped text survives both parsers whole.
    assert 'Ada "The Count", Lovelace; PhD' in str(event["SUMMARY"]) == other.vevent.summary.value


def test_the_uid_is_stable_across_versions_and_times() -> None:
    first = read_both(build_ics(invite(0)))[1].vevent.uid.value
    moved = read_both(build_ics(invite(1, start=START + timedelta(days=1))))[1].vevent.uid.value
    cancelled = read_both(build_ics(invite(2, "CANCEL")))[1].vevent.uid.value
    assert first == moved == cancelled


def test_no_credential_travels_in_the_calendar() -> None:
    text = build_ics(invite()).decode()
    links = " ".join(calendar_links(invite()).values())
    for place in (text, links):
        assert "/call/" not in place and "?t=" not in place


def test_the_attachment_says_its_method_as_rfc_6047_asks() -> None:
    attachment = ics_attachment(invite(3, "CANCEL"))
    assert attachment["name"] == "chatlink-call.ics"
    assert attachment["content_type"] == "text/calendar; charset=utf-8; method=CANCEL"
    assert vobject.readOne(base64.b64decode(attachment["content"]).decode()).method.value == "CANCEL"


def test_calendar_links_carry_the_utc_times() -> None:
    links = calendar_links(invite())
    google = parse_qs(urlsplit(links["google_url"]).query)
    outlook = parse_qs(urlsplit(links["outlook_url"]).query)
    assert urlsplit(links["google_url"]).netloc == "calendar.google.com"
    assert google["dates"] == ["20261208T140000Z/20261208T140500Z"]
    assert outlook["startdt"] == ["2026-12-08T14:00:00Z"] and outlook["enddt"] == ["2026-12-08T14:05:00Z"]
    assert "google_url" not in invite_context(invite(1, "CANCEL"))  # nothing to add once cancelled


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError):
        invite(0, "PUBLISH")
