"""The emails of a scheduled call: the invitation and its updates (each with its ``.ics``), the
reschedule questions and answers, the reminders.

Every party reads times in their own zone: the buyer in the zone they paid from (kept on the
request), the seller in the zone of their availability. Each email is an outbox row keyed by its
cause, the party, the call and the schedule's SEQUENCE (``call_rescheduled:buyer:<id>:1``), so a
repeated move queues nothing twice while a later change of the same call still gets its email.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.formats import format_when, iso
from app.models import CallRequest
from app.services.availability import load_availability
from app.services.calls import join_url
from app.services.invites import invite_context, invite_for
from app.services.lifecycle.notices import PARTIES, email_context, seller_contact
from app.services.outbox import queue_email, withdraw_emails
from app.services.scheduling import REMINDERS, ScheduleConfig

SELLER_SEES_BUYER_AS = "a buyer"  # in the seller's calendar: never the buyer's address


def party_zones(session: Session, call: CallRequest) -> dict[str, str]:
    return {"buyer": call.buyer_time_zone or "UTC", "seller": load_availability(session, call.seller_id).time_zone}


def recipients(session: Session, call: CallRequest) -> dict[str, str]:
    return {"buyer": call.buyer_email, "seller": seller_contact(session, call.seller_id)["email"]}


def schedule_context(
    session: Session, call: CallRequest, party: str, *, config: ScheduleConfig, zone: str, start: datetime
) -> dict[str, Any]:
    """What an email about the scheduled call says to ``party``, times in their zone."""
    base = email_context(session, call)
    minutes = max(1, round(config.call_duration.total_seconds() / 60))
    return base | {
        "party": party,
        "other_name": base["seller_name"] if party == "buyer" else "your buyer",
        "time_zone": zone,
        "start_at": iso(start),
        "start_text": format_when(start, zone),
        "opens_minutes": max(0, round(config.join_opens_before.total_seconds() / 60)),
        "join_window_minutes": max(1, round(config.join_window.total_seconds() / 60)),
        "duration_minutes": minutes,
        "cancel_notice_hours": round(config.cancel_notice.total_seconds() / 3600),
        "join_url": join_url(config.app_url, config.secret_key, call, party),
    }


def send_invitations(
    session: Session, call: CallRequest, *, cause: str, method: str, config: ScheduleConfig, now: datetime
) -> None:
    """``<cause>_<party>`` to both parties, each with the calendar event at the call's current
    SEQUENCE (REQUEST: the invitation or its update; CANCEL: remove it) and, for a REQUEST, the
    "add to calendar" links."""
    assert call.scheduled_start is not None, "only a scheduled call has an invitation"
    zones, addresses = party_zones(session, call), recipients(session, call)
    start = call.scheduled_start
    for party in PARTIES:
        context = schedule_context(session, call, party, config=config, zone=zones[party], start=start)
        invite = invite_for(
            request_id=str(call.id),
            app_url=config.app_url,
            email_from=config.email_from,
            attendee=addresses[party],
            sequence=call.schedule_sequence,
            method=method,
            start=start,
            end=start + config.call_duration,
            other_name=context["seller_name"] if party == "buyer" else SELLER_SEES_BUYER_AS,
            stamp=now,
        )
        queue_email(
            session,
            recipient=addresses[party],
            template=f"{cause}_{party}",
            context=context | invite_context(invite),
            dedupe_key=f"{cause}:{party}:{call.id}:{call.schedule_sequence}",
        )


def send_to(
    session: Session, call: CallRequest, party: str, template: str, *, config: ScheduleConfig, extra: dict[str, Any]
) -> None:
    """One email about the schedule to one party (a reschedule question or answer)."""
    assert call.scheduled_start is not None
    zone = party_zones(session, call)[party]
    context = schedule_context(session, call, party, config=config, zone=zone, start=call.scheduled_start)
    if call.reschedule_start is not None:
        context |= {
            "new_start_at": iso(call.reschedule_start),
            "new_start_text": format_when(call.reschedule_start, zone),
        }
    queue_email(
        session,
        recipient=recipients(session, call)[party],
        template=f"{template}_{party}",
        context=context | extra,
        dedupe_key=f"{template}:{party}:{call.id}:{call.schedule_sequence}",
    )


def send_reminders(session: Session, call: CallRequest, stage: str, *, config: ScheduleConfig) -> None:
    """The ``stage`` reminder (``24h`` or ``10min``) to both parties, once per start time."""
    assert call.scheduled_start is not None
    zones, addresses = party_zones(session, call), recipients(session, call)
    for party in PARTIES:
        context = schedule_context(session, call, party, config=config, zone=zones[party], start=call.scheduled_start)
        queue_email(
            session,
            recipient=addresses[party],
            template=f"call_reminder_{party}",
            context=context | {"stage": stage},
            dedupe_key=reminder_key(call, stage, party),
        )


def reminder_key(call: CallRequest, stage: str, party: str) -> str:
    return f"reminder:{stage}:{party}:{call.id}:{call.schedule_sequence}"


def withdraw_reminders(session: Session, call: CallRequest) -> int:
    """Reminders of this call's current time still waiting in the outbox are never sent (the call
    was cancelled or moved); the sweep sends none for it either, since it no longer matches."""
    keys = [reminder_key(call, stage, party) for stage, _ in REMINDERS for party in PARTIES]
    return withdraw_emails(session, keys)
