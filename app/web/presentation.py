"""What every page may use to show times, lengths and live regions the same way.

* ``when(value)``: a ``<time datetime>`` element whose text is the UTC time with its zone said
  (``8 Dec 2026, 15:00 UTC``); ``static/js/times.js`` rewrites it in the viewer's own zone. A page
  that uses it gets that script (``base.html`` asks ``page_uses_times()``); a page without times
  (the paywall) ships no script at all.
* ``time_left(deadline)``: ``3 h 20 min left``, as of the render (the script keeps it current).
* ``call_length``: the call's length as one phrase (``5-minute``), from CALL_DURATION_SECONDS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, current_app, g, request
from markupsafe import Markup, escape

from app.db import utcnow
from app.formats import call_length, format_utc, iso

STYLES = ("datetime", "date", "time")


def when(value: datetime | None, style: str = "datetime") -> Markup:
    """``<time datetime="2026-12-08T15:00:00Z" data-local="datetime">8 Dec 2026, 15:00 UTC</time>``."""
    if value is None:
        return Markup("")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    g.local_times = True
    return Markup('<time datetime="{}" data-local="{}">{}</time>').format(iso(value), style, format_utc(value))


def time_left(deadline: datetime | None) -> Markup:
    """``3 h 20 min left`` in an element the script counts down; empty without a deadline."""
    if deadline is None:
        return Markup("")
    g.local_times = True
    return Markup('<span data-time-left="{}">{}</span>').format(iso(deadline), escape(_left(deadline)))


def _left(deadline: datetime) -> str:
    minutes = max(0, int((deadline - utcnow()).total_seconds()) // 60)
    if minutes == 0:
        return "less than a minute left"
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        return f"{round(hours / 24)} days left"
    return f"{hours} h {minutes} min left" if hours else f"{minutes} min left"


def page_uses_times() -> bool:
    return bool(g.get("local_times"))


LIVE_REFRESH_HEADER = "X-ChatLink-Live"


def is_live_refresh() -> bool:
    """This render is ``static/js/live.js`` fetching the open page again to swap its live regions.
    It leaves the flash messages in the session: they are the next real page's (the seller who
    just clicked Accept must see "Accepted" even when the old page's refresh got there first)."""
    return request.headers.get(LIVE_REFRESH_HEADER) == "1"


def init_presentation(app: Flask) -> None:
    app.add_template_global(when)
    app.add_template_global(time_left)
    app.add_template_global(page_uses_times)
    app.add_template_global(is_live_refresh)

    @app.context_processor
    def lengths() -> dict[str, Any]:
        return {"call_length": call_length(current_app.extensions["settings"].call_duration_seconds)}
