"""Domain refusals: a service says no with a code and a message; the web edge picks the status.

Services raise one of the kinds below (never an HTTP status): ``NotFound`` for what the caller may
not see or that does not exist (both look the same, so an id reveals nothing), ``Forbidden`` for
what this caller may never do, ``Conflict`` for what the current state does not allow (someone
else's transition won, the call has ended), ``Invalid`` for input that breaks a rule (``fields``
names the inputs), ``Unavailable`` for a vendor that failed while the caller waited, and
``TooMany`` for a limit reached; ``Unauthenticated`` and ``BadRequest`` for wrong credentials and
links that cannot be used. ``app.errors`` maps each kind to its status in one table and
answers every one of them the same way, so views do not catch refusals to translate them.
"""

from __future__ import annotations


class Refusal(Exception):
    """A rule of the domain refused the action; nothing was changed by it."""

    def __init__(
        self, code: str, message: str, *, field: str | None = None, fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # ``field``: the one input at fault, named with this message; ``fields``: several.
        self.fields = fields or ({field: message} if field else {})


class NotFound(Refusal):
    """No such thing, or not the caller's to see."""


class Forbidden(Refusal):
    """The caller is known but may not do this."""


class Unauthenticated(Refusal):
    """Who the caller is could not be established (wrong email or password)."""


class BadRequest(Refusal):
    """The request cannot be used at all (a broken, used or expired link)."""


class Conflict(Refusal):
    """The current state does not allow it (a race lost, an ended call, a used form)."""


class Invalid(Refusal):
    """The input breaks a rule; ``fields`` says which input and why."""


class Unavailable(Refusal):
    """A vendor failed while the caller waited; trying again later may work."""


class TooMany(Refusal):
    """A limit was reached; ``retry_after`` is in seconds when known."""

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after
