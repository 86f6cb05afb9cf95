"""The mailer interface: Postmark in production, the dev mailbox otherwise.

``mailer_for(settings)`` picks one. Both take an ``OutgoingEmail`` and return the provider's
message id, or raise ``EmailDeliveryError`` saying whether a retry can help. The outbox row is the
record of what was sent (app/services/email_delivery.py), so the dev mailbox stores nothing of its
own: it logs the email and hands back a synthetic id, and ``/dev/mailbox`` reads the outbox.

Postmark has no idempotency key: a retry after a timeout may deliver twice. What keeps that rare
is the caller, which locks the row and never sends a row already marked sent.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

import requests
from postmarker.core import PostmarkClient
from postmarker.exceptions import PostmarkerException

from app.config import Settings
from app.observability import mask_email

log = logging.getLogger(__name__)

MESSAGE_STREAM = "outbound"  # Postmark's default transactional stream
POSTMARK_TIMEOUT_SECONDS = 10.0

# Postmark ErrorCodes that describe our account, not the message: a bad or missing server token
# (10) and an account that may not send right now (405, e.g. out of credits). Fixing the
# configuration makes the same email deliverable, so these are retried rather than failed.
ACCOUNT_ERROR_CODES = frozenset({10, 405})


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str  # with its parameters: text/calendar; charset=utf-8; method=REQUEST
    content_base64: str


@dataclass(frozen=True)
class OutgoingEmail:
    email_id: str  # the outbox row's id, sent along as metadata so bounces can be traced back
    to: str
    subject: str
    text_body: str
    html_body: str
    tag: str  # the template name: Postmark groups its statistics by tag
    attachments: tuple[Attachment, ...] = ()


class EmailDeliveryError(Exception):
    """Sending failed. ``permanent`` errors will fail again whatever we do (an inactive recipient,
    an invalid message); the others may succeed later (network, 429, 5xx, a configuration error)."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None, error_code: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.error_code = error_code


class Mailer(Protocol):
    def send(self, message: OutgoingEmail) -> str:
        """Deliver ``message``; return the provider's message id."""
        ...


def is_permanent_failure(status: int | None, error_code: int | None) -> bool:
    """Whether a Postmark answer means "never retry this email".

    No HTTP status means the request did not complete (connection refused, timeout): retry.
    401 and the account error codes are configuration errors: retry until an operator fixes them.
    408, 429 and 5xx are the provider's momentary trouble: retry. Any other 4xx, and in particular
    422 with ErrorCode 300 (invalid request) or 406 (inactive recipient), is about the message
    itself and will not change on a retry.
    """
    if status is None or status == 401 or error_code in ACCOUNT_ERROR_CODES:
        return False
    if status in (408, 429) or status >= 500:
        return False
    return 400 <= status < 500


class PostmarkMailer:
    """Sends through Postmark's ``POST /email`` with postmarker, behind our interface."""

    def __init__(
        self,
        server_token: str,
        *,
        api_base: str,
        sender: str,
        timeout: float = POSTMARK_TIMEOUT_SECONDS,
    ):
        self.server_token = server_token
        self.api_base = api_base
        self.sender = sender
        self.timeout = timeout

    def send(self, message: OutgoingEmail) -> str:
        client = PostmarkClient(server_token=self.server_token, root_api_url=self.api_base, timeout=self.timeout)
        try:
            response = client.emails.send(
                From=self.sender,
                To=message.to,
                Subject=message.subject,
                TextBody=message.text_body,
                HtmlBody=message.html_body,
                Tag=message.tag,
                Metadata={"email_id": message.email_id},
                MessageStream=MESSAGE_STREAM,
                # Postmark's own shape (Name, base64 Content, ContentType); None sends no key.
                Attachments=[
                    {"Name": a.name, "Content": a.content_base64, "ContentType": a.content_type}
                    for a in message.attachments
                ]
                or None,
            )
        except requests.exceptions.JSONDecodeError as exc:
            # A 2xx we cannot read was most likely accepted: retrying could deliver it twice.
            raise EmailDeliveryError(
                f"Postmark accepted the request with an unreadable answer: {exc}", permanent=True
            ) from exc
        except (PostmarkerException, requests.RequestException, KeyError) as exc:
            raise _classify(exc) from exc
        finally:
            client.session.close()
        message_id = response.get("MessageID") if isinstance(response, dict) else None
        if not message_id:
            raise EmailDeliveryError(f"Postmark answered without a MessageID: {response!r:.200}", permanent=True)
        return str(message_id)


def _classify(exc: Exception) -> EmailDeliveryError:
    """Turn whatever postmarker or requests raised into our error, keeping status and ErrorCode.

    postmarker raises ``ClientError`` (with ``error_code``) from the ``HTTPError`` that carries the
    response; an error body without JSON leaves the bare ``HTTPError``; a JSON body without an
    ErrorCode surfaces as a ``KeyError`` raised while handling that ``HTTPError``.
    """
    status = _http_status(exc)
    error_code = getattr(exc, "error_code", None)
    permanent = is_permanent_failure(status, error_code)
    where = f"HTTP {status}" if status is not None else type(exc).__name__
    return EmailDeliveryError(
        f"Postmark {where}: {exc}"[:1000], permanent=permanent, status=status, error_code=error_code
    )


def _http_status(exc: BaseException | None) -> int | None:
    seen = 0
    while exc is not None and seen < 5:
        response = getattr(exc, "response", None)
        if isinstance(response, requests.Response):
            return response.status_code
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class DevMailbox:
    """The built-in twin: "sends" by logging the email, which the dev mailbox then shows.

    The log line carries the subject and the text body, so a developer sees links (sign-up
    confirmation, password reset) right in the terminal. The recipient is masked, as everywhere.
    """

    def __init__(self, *, app_url: str = ""):
        self.app_url = app_url.rstrip("/")

    def send(self, message: OutgoingEmail) -> str:
        message_id = f"dev-{uuid.uuid4()}"
        attached = "".join(f"\n[attached: {a.name}, {a.content_type}]" for a in message.attachments)
        log.info(
            "dev mailbox: email to %s\nSubject: %s\n\n%s%s\n(see %s/dev/mailbox/%s)",
            mask_email(message.to),
            message.subject,
            message.text_body,
            attached,
            self.app_url,
            message.email_id,
            extra={"email_id": message.email_id, "template": message.tag},
        )
        return message_id


def mailer_for(settings: Settings) -> Mailer:
    """Postmark when a server token is configured, the dev mailbox otherwise."""
    if settings.postmark_server_token:
        return PostmarkMailer(
            settings.postmark_server_token, api_base=settings.postmark_api_base, sender=settings.email_from
        )
    return DevMailbox(app_url=settings.app_url)
