"""A local fake of Daily's REST API: an ``http.server`` thread on 127.0.0.1, and Daily's webhooks.

Point ``DAILY_API_BASE`` at ``fake.url`` (it serves under ``/v1`` like the real one). It keeps
rooms and meeting tokens in memory and answers the way Daily does: ``POST /rooms`` (400 when the
name exists), ``GET|POST|DELETE /rooms/<name>`` (404 when missing), ``POST /meeting-tokens``,
``GET /presence`` (who ``fake.present`` says is in each room, as Daily shapes it).

As a webhook sender it builds Daily's events (``joined``/``left``/``meeting_ended``: the envelope
``{version, type, id, payload, event_ts}``) and signs them as Daily does (``signed``: base64
HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with the base64-decoded secret, in
``X-Webhook-Signature`` and ``X-Webhook-Timestamp``); ``deliver`` posts one to a URL.
Every request is recorded with the time it arrived; every deletion too (the benchmark measures
how late rooms are deleted). Failures are scripted per call:

    with FakeDaily(api_key="key") as fake:
        fake.fail_next(429, 503)          # the next two calls fail, then Daily recovers
        fake.fail_next_on("POST", "/v1/rooms", 429)  # only the next room creation fails
        ...
        assert fake.rooms["cl-abc"]["config"]["max_participants"] == 2
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

# A webhook secret as Daily returns one: base64 of random bytes.
WEBHOOK_SECRET = base64.b64encode(b"chatlink-test-daily-webhook-key!").decode()


ERROR_TYPES = {
    400: "invalid-request-error",
    401: "authentication-error",
    404: "not-found",
    429: "rate-limit-error",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    at: float  # time.time() when it arrived


@dataclass
class FakeDaily:
    api_key: str = "daily-test-key"
    domain: str = "chatlink-test"
    requests: list[RecordedRequest] = field(default_factory=list)
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)  # room name → time.time() of the deletion
    # room name → participants Daily's presence lists: {"id", "userId", "userName", "joinTime"}
    present: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    webhook_secret: str = WEBHOOK_SECRET
    _script: deque[int] = field(default_factory=deque)
    _path_script: list[tuple[str, str, int]] = field(default_factory=list)  # (method, exact path, status)
    _stalls: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeDaily is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, *statuses: int) -> None:
        """The next calls answer these statuses (429, 500, 503...), in order, before any real work."""
        with self._lock:
            self._script.extend(statuses)

    def fail_next_on(self, method: str, path: str, *statuses: int) -> None:
        """The next ``method`` calls to exactly ``path`` (such as ``POST /v1/rooms``) answer these
        statuses, in order; other calls are served as usual."""
        with self._lock:
            self._path_script.extend((method, path, status) for status in statuses)

    def stall_next(self, seconds: float) -> None:
        """The next call waits this long before answering (to trip a client's read timeout)."""
        with self._lock:
            self._stalls.append(seconds)

    def calls(self, method: str, prefix: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def start(self) -> FakeDaily:
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-daily", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeDaily:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # The API itself, called with the lock held.

    def answer(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if self._script:
            status = self._script.popleft()
            return status, _error(status, "scripted failure")
        for index, (scripted_method, scripted_path, status) in enumerate(self._path_script):
            if (scripted_method, scripted_path) == (method, path.split("?", 1)[0]):
                del self._path_script[index]
                return status, _error(status, "scripted failure")
        parts = path.removeprefix("/v1").strip("/").split("/")
        if parts == ["rooms"] and method == "POST":
            return self._create_room(body)
        if parts == ["meeting-tokens"] and method == "POST":
            token = f"tok-{uuid.uuid4().hex}"
            self.tokens[token] = dict(body.get("properties", {}))
            return 200, {"token": token}
        if len(parts) == 2 and parts[0] == "rooms":
            return self._room(method, parts[1], body)
        if parts == ["presence"] and method == "GET":
            return 200, {room: [dict(p, room=room) for p in people] for room, people in self.present.items()}
        return 404, _error(404, "not found")

    def _create_room(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body.get("name") or uuid.uuid4().hex[:20]
        if name in self.rooms:
            return 400, _error(400, f"a room named {name} already exists")
        room = {
            "id": str(uuid.uuid4()),
            "name": name,
            "api_created": True,
            "privacy": body.get("privacy", "public"),
            "url": f"https://{self.domain}.daily.co/{name}",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "config": dict(body.get("properties", {})),
        }
        self.rooms[name] = room
        return 200, room

    def _room(self, method: str, name: str, body: Any) -> tuple[int, dict[str, Any]]:
        room = self.rooms.get(name)
        if room is None:
            return 404, _error(404, f"room {name} not found")
        if method == "GET":
            return 200, room
        if method == "POST":
            room["config"].update(body.get("properties", {}))
            return 200, room
        if method == "DELETE":
            del self.rooms[name]
            self.deleted[name] = time.time()
            return 200, {"deleted": True, "name": name}
        return 405, _error(400, "method not allowed")

    # Daily's webhooks.

    def joined(self, room: str, party: str, session_id: str, joined_at: float, **extra: Any) -> dict[str, Any]:
        payload = {"room": room, "session_id": session_id, "user_id": party, "user_name": party.title(),
                   "owner": party == "seller", "joined_at": joined_at, **extra}  # fmt: skip
        return event("participant.joined", payload)

    def left(self, room: str, party: str, session_id: str, joined_at: float, duration: float) -> dict[str, Any]:
        payload = {"room": room, "session_id": session_id, "user_id": party, "user_name": party.title(),
                   "owner": party == "seller", "joined_at": joined_at, "duration": duration}  # fmt: skip
        return event("participant.left", payload)

    def meeting_ended(self, room: str, start_ts: float, end_ts: float) -> dict[str, Any]:
        return event(
            "meeting.ended", {"room": room, "meeting_id": str(uuid.uuid4()), "start_ts": start_ts, "end_ts": end_ts}
        )

    def signed(
        self, evt: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Daily would send for ``evt``."""
        body = json.dumps(evt).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = sign_webhook(body, secret or self.webhook_secret, stamp)
        headers = {"Content-Type": "application/json", "X-Webhook-Timestamp": stamp, "X-Webhook-Signature": signature}
        return body, headers

    def deliver(self, url: str, evt: dict[str, Any], **options: Any) -> int:
        """POST ``evt`` to ``url`` as Daily does; the HTTP status."""
        body, headers = self.signed(evt, **options)
        return requests.post(url, data=body, headers=headers, timeout=10).status_code


def event(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "1.0.0",
        "type": event_type,
        "id": f"evt-{uuid.uuid4()}",
        "payload": payload,
        "event_ts": time.time(),
    }


def sign_webhook(body: bytes, secret: str, timestamp: str) -> str:
    """Daily's signature, computed here independently of the app's verifier."""
    key = base64.b64decode(secret)
    return base64.b64encode(hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).digest()).decode()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is what a stall test wants: nothing to report.
        return


def _error(status: int, info: str) -> dict[str, Any]:
    return {"error": ERROR_TYPES.get(status, "server-error"), "info": info}


def _handler_for(fake: FakeDaily) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            with fake._lock:
                stall = fake._stalls.popleft() if fake._stalls else 0.0
            if stall:
                time.sleep(stall)
            with fake._lock:
                fake.requests.append(
                    RecordedRequest(self.command, self.path, dict(self.headers.items()), body or None, time.time())
                )
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    status, answer = 401, _error(401, "authentication required")
                else:
                    status, answer = fake.answer(self.command, self.path, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler
