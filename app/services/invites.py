"""Calendar invitations for a scheduled call: the ``.ics`` file (built with ``icalendar``) and the
"add to Google / Outlook calendar" links.

One call is one calendar event everywhere: its UID is ``call-<request id>@<our host>`` for its
whole life, and each change (a reschedule, a cancellation) sends the same UID with a higher
SEQUENCE, so calendars update or remove the event they already hold instead of adding another
(RFC 5546). METHOD is REQUEST for the invitation and its updates, CANCEL for a cancellation; the
attachment's MIME type carries the same method, as RFC 6047 asks.

Neither the file nor the links carry a join link: a calendar is often shared or synced to other
services, and the join link is the party's credential. They point to the email instead.

The invitation is built when the move that causes it is made and stored in the outbox row's
context (``attachments``), so what the dev mailbox shows is byte for byte what was sent.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlencode, urlsplit

from icalendar import Calendar, Event, vCalAddress, vText

PRODID = "-//ChatLink//Scheduled calls//EN"
FILENAME = "chatlink-call.ics"
METHODS = ("REQUEST", "CANCEL")


@dataclass(frozen=True)
class Invite:
    """One party's view of the call's calendar event."""

    request_id: str
    host: str  # the app's host name: the UID's domain
    sequence: int
    method: str  # REQUEST | CANCEL
    start: datetime
    end: datetime
    summary: str
    description: str
    organizer: str  # the sender's address (EMAIL_FROM)
    attendee: str  # this party's address
    stamp: datetime  # when this version of the event was made (DTSTAMP)

    @property
    def uid(self) -> str:
        return f"call-{self.request_id}@{self.host}"


def invite_for(
    *,
    request_id: str,
    app_url: str,
    email_from: str,
    attendee: str,
    sequence: int,
    method: str,
    start: datetime,
    end: datetime,
    other_name: str,
    stamp: datetime,
) -> Invite:
    if method not in METHODS:
        raise ValueError(f"unknown calendar method {method!r}")
    host = urlsplit(app_url).hostname or "chatlink.localhost"
    cancelled = method == "CANCEL"
    summary = f"{'Cancelled: ' if cancelled else ''}ChatLink video call with {other_name}"
    description = (
        "This call was cancelled."
        if cancelled
        else f"Your ChatLink video call with {other_name}. Join from the link in your ChatLink email; "
        "the room opens a few minutes before the start."
    )
    return Invite(
        request_id=request_id,
        host=host,
        sequence=sequence,
        method=method,
        start=start.astimezone(UTC),
        end=end.astimezone(UTC),
        summary=summary,
        description=description,
        organizer=parseaddr(email_from)[1] or email_from,
        attendee=attendee,
        stamp=stamp.astimezone(UTC),
    )


def build_ics(invite: Invite) -> bytes:
    """The VCALENDAR with one VEVENT, times in UTC (``DTSTART:20261208T140000Z``): an instant
    every calendar places correctly whatever its own zone."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", invite.method)
    event = Event()
    event.add("uid", invite.uid)
    event.add("sequence", invite.sequence)
    event.add("dtstamp", invite.stamp)
    event.add("dtstart", invite.start)
    event.add("dtend", invite.end)
    event.add("summary", invite.summary)
    event.add("description", invite.description)
    event.add("status", "CANCELLED" if invite.method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")
    organizer = vCalAddress(f"mailto:{invite.organizer}")
    organizer.params["cn"] = vText("ChatLink")
    event.add("organizer", organizer, encode=False)
    attendee = vCalAddress(f"mailto:{invite.attendee}")
    attendee.params["role"] = vText("REQ-PARTICIPANT")
    attendee.params["partstat"] = vText("ACCEPTED")
    attendee.params["rsvp"] = vText("FALSE")
    event.add("attendee", attendee, encode=False)
    calendar.add_component(event)
    ical: bytes = calendar.to_ical()
    return ical


def ics_attachment(invite: Invite) -> dict[str, str]:
    """The outbox's attachment entry (JSON: it is stored in the row's context)."""
    return {
        "name": FILENAME,
        "content_type": f"text/calendar; charset=utf-8; method={invite.method}",
        "content": base64.b64encode(build_ics(invite)).decode("ascii"),
    }


def calendar_links(invite: Invite) -> dict[str, str]:
    """ "Add to calendar" links for Google Calendar and Outlook on the web (no join link in them)."""
    google = urlencode(
        {
            "action": "TEMPLATE",
            "text": invite.summary,
            "dates": f"{_basic(invite.start)}/{_basic(invite.end)}",
            "details": invite.description,
        }
    )
    outlook = urlencode(
        {
            "path": "/calendar/action/compose",
            "rru": "addevent",
            "subject": invite.summary,
            "startdt": _extended(invite.start),
            "enddt": _extended(invite.end),
            "body": invite.description,
        }
    )
    return {
        "google_url": f"https://calendar.google.com/calendar/render?{google}",
        "outlook_url": f"https://outlook.live.com/calendar/0/deeplink/compose?{outlook}",
    }


def invite_context(invite: Invite) -> dict[str, Any]:
    """What an email carrying this invitation adds to its context: the attachment, the links."""
    context: dict[str, Any] = {"attachments": [ics_attachment(invite)], "calendar_uid": invite.uid}
    if invite.method == "REQUEST":
        context |= calendar_links(invite)
    return context


def _basic(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _extended(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
