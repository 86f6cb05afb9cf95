"""A local fake of the parts of Stripe's API ChatLink calls: an ``http.server`` thread on 127.0.0.1.

Point ``STRIPE_API_BASE`` (stripe-python's api base address) at ``fake.url``. Every request is
recorded with its method, path, form parameters exactly as sent (flat bracket keys such as
``payment_intent_data[capture_method]``), query parameters and the ``Idempotency-Key`` header.

    with FakeStripe() as fake:
        fake.fail_next(500)  # the next call answers a Stripe-shaped 500
        fake.fail_path(r"/v1/payment_intents/[^/]+/capture", 500, 500)  # the next two captures fail
        ...
        assert fake.requests[0].params["mode"] == "payment"

Objects it creates are kept, so a retrieve returns what was created; ``fake.set_intent`` sets the
PaymentIntent a session reports (for the webhook's re-fetch). For Connect it creates Express
accounts, Account Links, login links and Transfers; ``fake.set_account`` changes what an account
reports and ``fake.reverse_transfer`` reverses a transfer. A POST repeated with the same
``Idempotency-Key`` gets the first answer again (and creates nothing), as Stripe does.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    idempotency_key: str | None
    headers: dict[str, str]


@dataclass
class FakeStripe:
    requests: list[RecordedRequest] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, str] = field(default_factory=dict)  # charge id -> payment intent id
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _failures: deque[tuple[int, str]] = field(default_factory=deque)
    _path_failures: list[tuple[str, int, str]] = field(default_factory=list)  # (path pattern, status, code)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, status: int, code: str = "api_error") -> None:
        """The next call answers ``status`` with a Stripe-shaped error body."""
        self._failures.append((status, code))

    def fail_path(self, pattern: str, *statuses: int, code: str = "api_error") -> None:
        """The next calls whose path fully matches ``pattern`` answer these statuses, in order;
        calls to other paths are served as usual (for faults while other traffic flows)."""
        with self._lock:
            self._path_failures.extend((pattern, status, code) for status in statuses)

    def set_intent(self, session_id: str, status: str, *, intent_id: str | None = None) -> dict[str, Any]:
        intent_id = intent_id or f"pi_fake_{len(self.intents) + 1}"
        self.intents[intent_id] = {"id": intent_id, "object": "payment_intent", "status": status}
        self.sessions[session_id]["payment_intent"] = intent_id
        self.sessions[session_id]["status"] = "complete"
        return self.intents[intent_id]

    def set_account(self, account_id: str, *, enabled: bool, due: list[str] | None = None) -> dict[str, Any]:
        """What the account reports from now on: onboarding finished (payouts enabled) or not."""
        account = self.accounts[account_id]
        due = list(due or [])
        account.update(details_submitted=True, charges_enabled=enabled, payouts_enabled=enabled)
        account["capabilities"] = {"transfers": "active" if enabled else "inactive"}
        account["requirements"] = {"currently_due": due, "eventually_due": due, "past_due": [],
                                   "disabled_reason": None if enabled else "requirements.past_due"}  # fmt: skip
        return account

    def reverse_transfer(self, transfer_id: str, amount: int | None = None) -> dict[str, Any]:
        transfer = self.transfers[transfer_id]
        transfer["amount_reversed"] = amount if amount is not None else transfer["amount"]
        transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
        return transfer

    def posts_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def __enter__(self) -> FakeStripe:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # Routing.

    def handle(
        self, method: str, path: str, params: dict[str, str], idempotency_key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            remembered = self._idempotent.get(f"{path}:{idempotency_key}") if idempotency_key else None
            if method == "POST" and remembered is not None:
                return remembered
            answer = self._route(method, path, params)
            # Only successes are remembered here, so a fault injected for one attempt does not stick.
            if method == "POST" and idempotency_key and answer[0] == 200:
                self._idempotent[f"{path}:{idempotency_key}"] = answer
            return answer

    def _route(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self._failures:
            status, code = self._failures.popleft()
            return status, {"error": {"type": "api_error", "code": code, "message": f"fake {status}"}}
        for index, (pattern, status, code) in enumerate(self._path_failures):
            if re.fullmatch(pattern, path):
                del self._path_failures[index]
                return status, {"error": {"type": _error_type(status), "code": code, "message": f"fake {status}"}}
        routes = [
            ("POST", r"/v1/checkout/sessions", self._create_session),
            ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", self._get_session),
            ("POST", r"/v1/payment_intents/(?P<id>[^/]+)/(?P<action>capture|cancel)", self._move_intent),
            ("GET", r"/v1/payment_intents/(?P<id>[^/]+)", lambda p, id: self._found(self.intents.get(id))),
            ("POST", r"/v1/refunds", self._refund),
            ("GET", r"/v1/charges/(?P<id>[^/]+)", self._get_charge),
            ("POST", r"/v1/accounts", self._create_account),
            ("GET", r"/v1/accounts/(?P<id>[^/]+)", lambda p, id: self._found(self.accounts.get(id))),
            ("POST", r"/v1/accounts/(?P<id>[^/]+)/login_links", self._login_link),
            ("POST", r"/v1/account_links", self._account_link),
            ("POST", r"/v1/transfers", self._create_transfer),
            ("GET", r"/v1/transfers/(?P<id>[^/]+)", lambda p, id: self._found(self.transfers.get(id))),
        ]
        for route_method, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                return action(params, **match.groupdict())
        return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL {path}"}}

    def _create_session(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        session_id = f"cs_test_fake_{len(self.sessions) + 1}"
        metadata = {key[9:-1]: value for key, value in params.items() if key.startswith("metadata[")}
        self.sessions[session_id] = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": int(params.get("line_items[0][price_data][unit_amount]", "0")),
            "currency": params.get("line_items[0][price_data][currency]"),
            "customer_email": params.get("customer_email"),
            "customer_details": None,
            "metadata": metadata,
            "payment_intent": None,
        }
        return 200, self.sessions[session_id]

    def _get_session(self, params: dict[str, str], id: str) -> tuple[int, dict[str, Any]]:
        session = self.sessions.get(id)
        if session is None:
            return self._found(None)
        body = dict(session)
        if body["payment_intent"] and params.get("expand[0]") == "payment_intent":
            body["payment_intent"] = self.intents[body["payment_intent"]]
        return 200, body

    def _move_intent(self, params: dict[str, str], id: str, action: str) -> tuple[int, dict[str, Any]]:
        intent = self.intents.get(id) or {"id": id, "object": "payment_intent", "status": "requires_capture"}
        intent["status"] = "succeeded" if action == "capture" else "canceled"
        self.intents[id] = intent
        return 200, intent

    def _refund(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return 200, {"id": f"re_fake_{len(self.requests)}", "object": "refund", "status": "succeeded"}

    def _get_charge(self, params: dict[str, str], id: str) -> tuple[int, dict[str, Any]]:
        if id not in self.charges:
            return self._found(None)
        return 200, {"id": id, "object": "charge", "payment_intent": self.charges[id]}

    def _create_account(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        account_id = f"acct_fake_{len(self.accounts) + 1}"
        self.accounts[account_id] = {
            "id": account_id, "object": "account", "type": params.get("type"), "country": params.get("country"),
            "email": params.get("email"), "details_submitted": False, "charges_enabled": False,
            "payouts_enabled": False, "capabilities": {"transfers": "inactive"},
            "requirements": {"currently_due": ["external_account"], "eventually_due": [], "past_due": [],
                             "disabled_reason": "requirements.past_due"},
            "metadata": _metadata(params),
        }  # fmt: skip
        return 200, self.accounts[account_id]

    def _account_link(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params.get("account") not in self.accounts:
            return self._found(None)
        url = f"https://connect.stripe.test/setup/e/{params['account']}/{len(self.requests)}"
        return 200, {"object": "account_link", "url": url, "expires_at": 4102444800, "created": 0}

    def _login_link(self, params: dict[str, str], id: str) -> tuple[int, dict[str, Any]]:
        if id not in self.accounts:
            return self._found(None)
        return 200, {"object": "login_link", "url": f"https://connect.stripe.test/express/{id}/{len(self.requests)}"}

    def _create_transfer(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        destination = self.accounts.get(params.get("destination", ""))
        if destination is None or destination["capabilities"].get("transfers") != "active":
            error = {"type": "invalid_request_error", "code": "insufficient_capabilities_for_transfer",
                     "message": "Your destination account needs to have the transfers capability enabled."}  # fmt: skip
            return 400, {"error": error}
        transfer_id = f"tr_fake_{len(self.transfers) + 1}"
        self.transfers[transfer_id] = {
            "id": transfer_id, "object": "transfer", "amount": int(params["amount"]), "amount_reversed": 0,
            "currency": params.get("currency"), "destination": params.get("destination"),
            "transfer_group": params.get("transfer_group"), "metadata": _metadata(params), "reversed": False,
        }  # fmt: skip
        return 200, self.transfers[transfer_id]

    @staticmethod
    def _found(obj: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if obj is None:
            error = {"type": "invalid_request_error", "code": "resource_missing", "message": "No such object"}
            return 404, {"error": error}
        return 200, obj


def _metadata(params: dict[str, str]) -> dict[str, str]:
    return {key[9:-1]: value for key, value in params.items() if key.startswith("metadata[")}


def _error_type(status: int) -> str:
    """Stripe's error type for a status: a 402 is a card error, other 4xx invalid requests."""
    if status == 402:
        return "card_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            form = dict(parse_qsl(body, keep_blank_values=True))
            recorded = RecordedRequest(
                method=self.command,
                path=parts.path,
                params=form,
                query=query,
                idempotency_key=self.headers.get("Idempotency-Key"),
                headers={key: value for key, value in self.headers.items()},
            )
            fake.requests.append(recorded)
            status, payload = fake.handle(self.command, parts.path, {**query, **form}, recorded.idempotency_key)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_fake_{len(fake.requests)}")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    return Handler
