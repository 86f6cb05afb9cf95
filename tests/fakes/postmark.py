"""A local fake of Postmark's ``POST /email``: an ``http.server`` thread on 127.0.0.1.

Point ``POSTMARK_API_BASE`` (postmarker's ``root_api_url``) at ``fake.url``. postmarker builds
``urljoin(root, "/email")``, which drops any path, so the fake serves at its root.

Responses are scripted per call with ``fake.respond(...)``; once the script runs out every call
succeeds the way Postmark does. Every request is recorded (path, headers, parsed JSON body).

    with FakePostmark() as fake:
        fake.respond(Reply.error(422, 406, "Inactive recipient"), Reply.ok())
        ...
        assert fake.requests[0].json["To"] == "buyer@example.com"

Or per recipient, whatever order the emails arrive in:

        fake.respond_to("gone@example.com", Reply.error(422, 406, "Inactive recipient"))
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] | None = None  # None: Postmark's success body with a fresh MessageID
    delay: float = 0.0  # seconds to wait before answering (to trigger a client timeout)
    disconnect: bool = False  # close the connection without answering (a network error)

    @classmethod
    def ok(cls, message_id: str | None = None) -> Reply:
        return cls(200, {"ErrorCode": 0, "Message": "OK", "MessageID": message_id or str(uuid.uuid4())})

    @classmethod
    def error(cls, status: int, error_code: int, message: str = "error") -> Reply:
        return cls(status, {"ErrorCode": error_code, "Message": message})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


@dataclass
class FakePostmark:
    requests: list[RecordedRequest] = field(default_factory=list)
    _script: deque[Reply] = field(default_factory=deque)
    _by_recipient: dict[str, deque[Reply]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def respond(self, *replies: Reply) -> None:
        """Queue the answers to the next calls, in order."""
        with self._lock:
            self._script.extend(replies)

    def respond_to(self, recipient: str, *replies: Reply) -> None:
        """Queue the answers to the next calls addressed ``To`` this recipient (case-insensitive),
        in order; they take precedence over ``respond``'s queue."""
        with self._lock:
            self._by_recipient.setdefault(recipient.lower(), deque()).extend(replies)

    @property
    def url(self) -> str:
        assert self._server is not None, "FakePostmark is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def sent(self) -> list[Any]:
        """The JSON bodies posted to /email."""
        return [r.json for r in self.requests if r.method == "POST" and r.path == "/email"]

    def start(self) -> FakePostmark:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-postmark", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakePostmark:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            to = request.json.get("To") if isinstance(request.json, dict) else None
            scripted = self._by_recipient.get(str(to).lower()) if to else None
            if scripted:
                return scripted.popleft()
            return self._script.popleft() if self._script else Reply.ok()


def _handler_for(fake: FakePostmark) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            request = RecordedRequest("POST", self.path, dict(self.headers.items()), body)
            reply = fake._next_reply(request)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.disconnect:
                self.close_connection = True
                self.connection.close()
                return
            self._answer(reply, body)

        def _answer(self, reply: Reply, body: Any) -> None:
            if reply.body is None:
                to = body.get("To") if isinstance(body, dict) else None
                payload = {"To": to, "SubmittedAt": "2026-11-25T00:00:00Z", "MessageID": str(uuid.uuid4())}
                payload |= {"ErrorCode": 0, "Message": "OK"}
                data = json.dumps(payload).encode()
            elif isinstance(reply.body, dict):
                data = json.dumps(reply.body).encode()
            else:
                data = reply.body
            self.send_response(reply.status)
            content_type = "application/json" if not isinstance(reply.body, bytes) else "text/plain"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests assert on ``fake.requests``, not on a log."""

    return Handler
