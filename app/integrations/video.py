"""Video rooms: Daily.co when DAILY_API_KEY is set, the app's own peer-to-peer WebRTC room otherwise.

One interface, four operations, all repeat-safe:

* ``create_room`` makes the private room of one call. The name is chosen by the caller and is
  deterministic per call, so a retried creation finds the room made by the first attempt.
* ``join_credential`` gives one party what the browser needs to enter: a Daily meeting token
  scoped to the room, or nothing for the built-in room (the app's own join token is enough).
* ``start`` runs when both parties are present: Daily's room ``exp`` moves to the call's
  ``ends_at`` with ``eject_at_room_exp``, so Daily itself ejects both on time even if every
  worker is down. Daily's ``eject_after_elapsed`` is deliberately never used: it counts from
  each participant's own join and would cut off whoever joined first.
* ``end`` deletes the room; a room that is already gone (404) counts as deleted.

Daily alone also answers ``presence`` (who is in which room now), which the worker polls when no
Daily webhook is configured (``app.services.daily_events``).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from app.config import Settings

log = logging.getLogger(__name__)

PARTIES = ("buyer", "seller")
ROOM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
RETRY_STATUSES = (429, 500, 502, 503, 504)


class VideoError(Exception):
    """The provider refused or failed. ``transient`` errors (network, timeout, 429, 5xx) may
    succeed later; the others (400, 401, 403) will not without a change on our side."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True)
class Room:
    name: str
    url: str


class VideoProvider(Protocol):
    name: str

    def create_room(self, *, name: str, request_id: str, expires_at: datetime) -> Room: ...

    def join_credential(self, room_name: str, *, party: str, user_name: str, expires_at: datetime) -> str | None: ...

    def start(self, room_name: str, *, ends_at: datetime) -> None: ...

    def end(self, room_name: str) -> None: ...


def unix_seconds(moment: datetime) -> int:
    """Whole seconds, rounded up: the provider must never close a room before our own clock does."""
    return math.ceil(moment.timestamp())


class BuiltinVideo:
    """The app serves the room page itself (static/js/call.js); signaling goes through Redis
    (app/services/signaling.py). There is nothing to create or delete at a vendor: the page
    refuses to go on once the call's ``ends_at`` has passed, and the API refuses to signal."""

    name = "builtin"

    def __init__(self, app_url: str):
        self.app_url = app_url.rstrip("/")

    def create_room(self, *, name: str, request_id: str, expires_at: datetime) -> Room:
        return Room(name=name, url=f"{self.app_url}/call/{request_id}")

    def join_credential(self, room_name: str, *, party: str, user_name: str, expires_at: datetime) -> str | None:
        return None

    def start(self, room_name: str, *, ends_at: datetime) -> None:
        return None

    def end(self, room_name: str) -> None:
        return None


class _CappedRetry(Retry):
    """Honours a 429's Retry-After, but never waits longer than ``backoff_max`` inside one call:
    a longer pause belongs to the Celery task's own retry, not to a blocked web request."""

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.backoff_max)


class DailyVideo:
    """Daily's REST API with ``requests``: a timeout on every call and up to ``retries`` retries
    with exponential backoff and jitter on connection errors, 429 and 5xx (urllib3's Retry).
    Retrying a POST is safe here: room names are deterministic (a second creation answers "already
    exists" and we read the room instead), and updating ``exp`` or minting a token twice is harmless."""

    name = "daily"

    def __init__(
        self,
        api_key: str,
        api_base: str = "https://api.daily.co/v1",
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        retries: int = 3,
        backoff_factor: float = 0.25,
        backoff_max: float = 4.0,
    ):
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        retry = _CappedRetry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST", "DELETE"}),
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            backoff_jitter=backoff_factor,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=10)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)

    def create_room(self, *, name: str, request_id: str, expires_at: datetime) -> Room:
        if not ROOM_NAME.match(name):
            raise ValueError(f"invalid Daily room name {name!r}")
        body = {
            "name": name,
            "privacy": "private",  # a meeting token is required to enter
            "properties": {
                "exp": unix_seconds(expires_at),
                "eject_at_room_exp": True,
                "max_participants": 2,
                "enable_prejoin_ui": True,  # the camera and microphone check before joining
                # Recording stays off: ``enable_recording`` is left unset, which disables it.
            },
        }
        response = self._request("POST", "/rooms", json=body)
        if response.status_code == 400 and "already exists" in _info(response):
            # A retry of a creation that reached Daily the first time: the room is ours.
            response = self._request("GET", f"/rooms/{name}")
        data = self._json(response, "create room")
        return Room(name=data["name"], url=data["url"])

    def join_credential(self, room_name: str, *, party: str, user_name: str, expires_at: datetime) -> str | None:
        if party not in PARTIES:
            raise ValueError(f"unknown party {party!r}")
        properties = {
            "room_name": room_name,  # without it the token would open every room of the domain
            "user_name": user_name[:100],
            "user_id": party,
            "is_owner": party == "seller",
            "exp": unix_seconds(expires_at),
        }
        response = self._request("POST", "/meeting-tokens", json={"properties": properties})
        return str(self._json(response, "create meeting token")["token"])

    def start(self, room_name: str, *, ends_at: datetime) -> None:
        body = {"properties": {"exp": unix_seconds(ends_at), "eject_at_room_exp": True}}
        self._json(self._request("POST", f"/rooms/{room_name}", json=body), "move room exp")

    def presence(self) -> dict[str, list[dict[str, Any]]]:
        """Who is in every room of the domain now (``GET /presence``: room name → participants,
        each with ``id``, ``userId`` and ``joinTime``; Daily says it lags up to 15 s). One call
        for all rooms, so polling it costs one request whatever the number of calls."""
        data = self._json(self._request("GET", "/presence"), "read presence")
        return {
            room: [p for p in people if isinstance(p, dict)]
            for room, people in data.items()
            if isinstance(people, list)
        }

    def end(self, room_name: str) -> None:
        response = self._request("DELETE", f"/rooms/{room_name}")
        if response.status_code == 404:
            return  # already deleted, or expired and removed by Daily: the room is gone either way
        self._json(response, "delete room")

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.http.request(method, self.api_base + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise VideoError(f"Daily {method} {path}: {type(error).__name__}", transient=True) from error

    def _json(self, response: requests.Response, action: str) -> dict[str, Any]:
        status = response.status_code
        if status >= 400:
            transient = status in RETRY_STATUSES
            log.warning("daily refused", extra={"action": action, "status": status, "info": _info(response)[:200]})
            raise VideoError(f"Daily could not {action}: HTTP {status}", transient=transient, status=status)
        try:
            data = response.json()
        except ValueError as error:
            raise VideoError(f"Daily answered {action} with a body that is not JSON", transient=True) from error
        if not isinstance(data, dict):
            raise VideoError(f"Daily answered {action} with an unexpected body", transient=True)
        return data


def _info(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    return str(data.get("info", "")) if isinstance(data, dict) else ""


def video_provider(settings: Settings, *, interactive: bool = False) -> VideoProvider:
    """Daily when DAILY_API_KEY is set (production requires it), the built-in room otherwise.

    ``interactive`` is for web requests: one quick retry and short timeouts, so a slow Daily
    holds a browser's request for seconds, not tens of seconds (the page retries, and a task
    takes over the work that must happen). Tasks use the patient default. Each adapter is shared
    per key and address, so its connection pool is reused."""
    if settings.daily_api_key:
        return _daily(settings.daily_api_key, settings.daily_api_base, interactive)
    return BuiltinVideo(settings.app_url)


@functools.lru_cache(maxsize=8)
def _daily(api_key: str, api_base: str, interactive: bool) -> DailyVideo:
    if interactive:
        return DailyVideo(api_key, api_base, timeout=(2.0, 4.0), retries=1, backoff_max=1.0)
    return DailyVideo(api_key, api_base)
