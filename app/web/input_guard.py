"""One guard, before every view, against input that no view can store or parse safely.

PostgreSQL cannot store a NUL character in text or JSONB, and a lone UTF-16 surrogate
(``"\\ud800"`` in JSON) cannot be encoded to UTF-8 at all; either one reaching a query is a 500.
JSON nested thousands of levels deep makes Python's parser raise ``RecursionError``, another
500. Checking every field in every view would miss the next field, so this guard looks at all
of the request's text (query, path, form fields and any JSON body) once, before the view runs,
and refuses with the error shape: 422 ``invalid_characters`` naming the field, 400
``invalid_json`` for a body nested too deeply. Nothing has been written when it refuses.

Views that must read their raw body before anything parses it (a signed webhook: the signature
covers the exact bytes) are marked with ``raw_body`` and check what they store themselves
(``clean_json_value``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from flask import Flask, current_app, request

from app.refusals import Invalid, Refusal

# Deeper than any body a client of ours sends (a Stripe event is about ten levels deep).
MAX_JSON_DEPTH = 32
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
BAD_TEXT = "Contains a character we cannot accept (a NUL byte or an unpaired surrogate)."
REPLACEMENT = "\ufffd"

View = TypeVar("View", bound=Callable[..., Any])


def raw_body(view: View) -> View:
    """Mark a view that reads and checks its own body; the guard still checks its query and path."""
    view.raw_body = True  # type: ignore[attr-defined]  # a marker attribute on the function
    return view


def init_input_guard(app: Flask) -> None:
    app.before_request(refuse_unsafe_input)


def refuse_unsafe_input() -> None:
    _check_pairs("query", request.args.items(multi=True))
    _check_pairs("path", (request.view_args or {}).items())
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "raw_body", False):
        return
    if request.mimetype in FORM_TYPES:
        _check_pairs("form", request.form.items(multi=True))
    elif _has_body() and (request.is_json or request.path.startswith("/api/")):
        _check_json_body()


def _has_body() -> bool:
    return request.method in ("POST", "PUT", "PATCH", "DELETE") and bool(request.get_data(cache=True))


def _check_json_body() -> None:
    """Parse the body once with the depth bounded; what is not JSON is left to the view."""
    try:
        value = json.loads(request.get_data(cache=True))
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        return
    for path, text in _walk(value):
        if _unsafe(text):
            raise Invalid("invalid_characters", BAD_TEXT, fields={path or "body": BAD_TEXT})


def _check_pairs(where: str, pairs: Iterable[tuple[str, object]]) -> None:
    for key, value in pairs:
        if _unsafe(key) or (isinstance(value, str) and _unsafe(value)):
            raise Invalid("invalid_characters", BAD_TEXT, fields={_printable(key) or where: BAD_TEXT})


def _walk(value: object) -> Iterator[tuple[str, str]]:
    """(top-level field, text) for every key and string in a JSON value, without recursion, and
    refusing anything deeper than ``MAX_JSON_DEPTH``."""
    stack: list[tuple[str, object, int]] = [("", value, 0)]
    while stack:
        field, item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(item, str):
            yield field, item
        elif isinstance(item, dict):
            for key, child in item.items():
                name = field or _printable(key)
                yield name, key
                stack.append((name, child, depth + 1))
        elif isinstance(item, list):
            stack.extend((field, child, depth + 1) for child in item)


def clean_json_value(value: Any) -> Any:
    """``value`` with every NUL and lone surrogate in its strings and keys replaced by U+FFFD, so
    that JSONB can store it: for signed bodies, which must be kept rather than refused. Deeper
    than ``MAX_JSON_DEPTH`` is refused like the guard does (400)."""
    if isinstance(value, str):
        return _clean_text(value)
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(root, 0, value, 0)]
    while stack:
        parent, slot, item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(item, dict):
            copy: Any = {_clean_text(key): None for key in item}  # keys first: the order is kept
            stack.extend((copy, _clean_text(key), child, depth + 1) for key, child in item.items())
        elif isinstance(item, list):
            copy = [None] * len(item)
            stack.extend((copy, index, child, depth + 1) for index, child in enumerate(item))
        else:
            copy = _clean_text(item) if isinstance(item, str) else item
        parent[slot] = copy
    return root[0]


def _unsafe(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _clean_text(text: str) -> str:
    if not _unsafe(text):
        return text
    return "".join(REPLACEMENT if char == "\x00" or "\ud800" <= char <= "\udfff" else char for char in text)


def _printable(key: str) -> str:
    """A field name fit to be echoed back in the error."""
    return _clean_text(key)[:64]


def _too_deep() -> Refusal:
    return Refusal("invalid_json", f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
