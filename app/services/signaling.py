"""The built-in room's signaling mailbox and the one-window-per-party rule, both in Redis.

Two browsers set up a WebRTC connection by exchanging an offer, an answer and ICE candidates.
They post them to the app, which appends each to the OTHER party's mailbox: a Redis stream per
call and party, trimmed and expiring. A page polls its own mailbox with the id of the last
message it saw, so a lost response loses nothing (the next poll asks again from the same
cursor), and any web process can answer any poll: nothing lives in process memory.

``PresenceSlots`` keeps each party's link usable in one window at a time: the window that joins
holds the party's slot and refreshes it while it is open; another window (a forwarded link, a
third person) is refused until the slot is released (leave) or lapses (a crashed browser).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, cast

import redis

from app.refusals import Invalid

PARTIES = ("buyer", "seller")
MESSAGE_TYPES = ("hello", "offer", "answer", "candidate", "bye")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# Two unsigned 64-bit numbers; 19 digits always fit, so Redis never refuses a cursor we let through.
STREAM_ID = re.compile(r"\d{1,19}-\d{1,19}")
MAX_MESSAGE_BYTES = 32_768  # an SDP with many codecs is ~10 KB; anything far larger is not signaling
MAX_MESSAGES = 200  # per mailbox; a call needs a few dozen
POLL_BATCH = 100


def _bad_message(problem: str) -> Invalid:
    """The message is not one a page of ours would send."""
    return Invalid("invalid", problem, field="message")


def other_party(party: str) -> str:
    return "seller" if party == "buyer" else "buyer"


def validate_message(message: Any) -> dict[str, Any]:
    """Keep only what a peer needs, and refuse anything else: the mailbox holds data from the
    browser, so it is bounded in kind and size."""
    if not isinstance(message, dict) or message.get("type") not in MESSAGE_TYPES:
        raise _bad_message("message.type must be one of " + ", ".join(MESSAGE_TYPES))
    for key in ("from", "to"):
        value = message.get(key)
        if value is not None and (not isinstance(value, str) or not CLIENT_ID.match(value)):
            raise _bad_message(f"message.{key} must be a client id")
    if not message.get("from"):
        raise _bad_message("message.from is required")
    kept = {key: message[key] for key in ("type", "from", "to", "sdp", "candidate") if key in message}
    if len(json.dumps(kept)) > MAX_MESSAGE_BYTES:
        raise _bad_message("message is too large")
    return kept


@dataclass(frozen=True)
class Signaling:
    redis: redis.Redis
    namespace: str  # "chatlink:<queue>": one Redis can serve several environments
    ttl_seconds: int = 3600

    def _key(self, call_id: str, party: str) -> str:
        return f"{self.namespace}:signal:{call_id}:{party}"

    def send(self, call_id: str, from_party: str, message: dict[str, Any]) -> str:
        """Append ``message`` (already validated) to the other party's mailbox; returns its id."""
        key = self._key(call_id, other_party(from_party))
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(key, {"m": json.dumps(message)}, maxlen=MAX_MESSAGES, approximate=False)
        pipe.expire(key, self.ttl_seconds)
        message_id, _ = pipe.execute()
        return str(message_id)

    def poll(self, call_id: str, party: str, after: object) -> tuple[list[dict[str, Any]], str | None]:
        """Messages for ``party`` newer than ``after`` (all of them when None or empty), oldest
        first, and the cursor to send next time."""
        if not after:
            after = None
        elif not isinstance(after, str) or not STREAM_ID.fullmatch(after):
            raise Invalid("invalid", "after must be a message id", field="after")
        start = f"({after}" if after else "-"
        entries = cast(
            list[tuple[str, dict[str, str]]],
            self.redis.xrange(self._key(call_id, party), min=start, max="+", count=POLL_BATCH),
        )
        messages = [{"id": entry_id, **json.loads(fields["m"])} for entry_id, fields in entries]
        cursor = entries[-1][0] if entries else after
        return messages, cursor

    def cursor(self, call_id: str, party: str) -> str | None:
        """The id of the newest message waiting for ``party``: a page that starts now reads after
        it, so it never acts on an offer meant for a window that has since closed."""
        last = cast(list[tuple[str, dict[str, str]]], self.redis.xrevrange(self._key(call_id, party), count=1))
        return last[0][0] if last else None

    def clear(self, call_id: str) -> None:
        self.redis.delete(*(self._key(call_id, party) for party in PARTIES))


# Claim or refresh atomically: a window may take a free slot or keep its own, never another's.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if holder == false then
  return 1
end
return 0
"""


@dataclass(frozen=True)
class PresenceSlots:
    redis: redis.Redis
    namespace: str
    ttl_seconds: int = 20  # a page refreshes its slot every few seconds while it is open

    def _key(self, call_id: str, party: str) -> str:
        return f"{self.namespace}:slot:{call_id}:{party}"

    def claim(self, call_id: str, party: str, client_id: str) -> bool:
        """True when ``client_id`` now holds the party's slot (it was free or already its own)."""
        return bool(self.redis.eval(_CLAIM, 1, self._key(call_id, party), client_id, self.ttl_seconds))

    def release(self, call_id: str, party: str, client_id: str) -> bool:
        """Free the slot if ``client_id`` holds it. False when another window holds it: that
        window is still in the call, so a "left" from this one must not count."""
        return bool(self.redis.eval(_RELEASE, 1, self._key(call_id, party), client_id))

    def holder(self, call_id: str, party: str) -> str | None:
        value = self.redis.get(self._key(call_id, party))
        return str(value) if value is not None else None
