"""Helpers that keep each area's operations short, and the parts every operation shares.

An operation is written as ``operation("Summary", tag=..., auth=..., body=..., ok={200: schema})``;
the error responses, the security requirement and the CSRF header follow from ``auth``. Schemas
are plain JSON Schema (OpenAPI 3.1 is JSON Schema 2020-12), built with ``obj``/``array``/``ref``.
"""

from __future__ import annotations

from typing import Any, Literal

Schema = dict[str, Any]
Auth = Literal["session", "admin", "public", "call", "signature"]

ERROR_REF = "#/components/schemas/Error"

STRING: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC."}
OPTIONAL_TIME: Schema = {"type": ["string", "null"], "format": "date-time", "description": "ISO 8601, UTC."}
CENTS: Schema = {"type": "integer", "description": "Integer cents."}
UUID: Schema = {"type": "string", "format": "uuid"}
EMAIL: Schema = {"type": "string", "format": "email", "maxLength": 254}
CURRENCY: Schema = {"type": "string", "minLength": 3, "maxLength": 3, "description": "ISO 4217, lower case."}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    """An object with these properties; ``required`` names the ones that must be there."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def nullable(schema: Schema) -> Schema:
    kind = schema.get("type", "object")
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def path_param(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def query_param(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


# Who may call an operation, as OpenAPI security requirements. The session cookie carries the
# login; a request that changes something also sends the CSRF token in X-CSRFToken.
_SECURITY: dict[tuple[Auth, bool], list[dict[str, list[str]]]] = {
    ("public", True): [{"csrfToken": []}],
    ("session", False): [{"session": []}],
    ("session", True): [{"session": [], "csrfToken": []}],
    ("admin", False): [{"session": []}],
    ("admin", True): [{"session": [], "csrfToken": []}],
}
_AUTH_NOTES = {
    "admin": "Admins only: 401 without a session, 403 for a seller.",
    "call": "No session and no CSRF token: the body's `token` is the party's call credential "
    "(the `t` of the call link).",
    "signature": "No session: authenticated by the provider's signature header over the raw body.",
}
_AUTH_ERRORS: dict[Auth, tuple[int, ...]] = {
    "session": (401,),
    "admin": (401, 403),
    "public": (),
    "call": (403,),
    "signature": (),
}
_ERROR_WORDS = {
    400: "Malformed request: not JSON, JSON nested too deeply, or a missing or wrong CSRF token.",
    401: "Not logged in (no session, or a session that was ended).",
    403: "Not allowed.",
    404: "Not found, or not yours to see.",
    409: "The current state does not allow it.",
    413: "The body is too large.",
    422: "A field is invalid, or holds a character we cannot accept; `fields` names them.",
    429: "Rate limited; `Retry-After` says when to try again.",
    503: "A dependency is briefly unavailable; try again.",
}


def operation(
    summary: str,
    *,
    tag: str,
    auth: Auth = "session",
    changes: bool = False,
    description: str = "",
    body: Schema | None = None,
    body_type: str = "application/json",
    parameters: list[dict[str, Any]] | None = None,
    ok: dict[int, Schema | None] | None = None,
    errors: tuple[int, ...] = (),
) -> dict[str, Any]:
    """One operation. ``changes`` (a POST or DELETE protected by the CSRF check) adds the
    X-CSRFToken requirement; ``ok`` maps success statuses to their body (None: no body)."""
    notes = [description] if description else []
    if auth in _AUTH_NOTES:
        notes.append(_AUTH_NOTES[auth])
    spec: dict[str, Any] = {"summary": summary, "tags": [tag], "operationId": _operation_id(summary)}
    if notes:
        spec["description"] = "\n\n".join(notes)
    spec["security"] = _SECURITY.get((auth, changes), [])
    if parameters:
        spec["parameters"] = parameters
    if body is not None:
        spec["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    responses: dict[str, Any] = {}
    for status, schema in (ok or {200: None}).items():
        responses[str(status)] = _response("Success.", schema)
    codes = {400, 422, 429, 503, *_AUTH_ERRORS[auth], *errors}
    if parameters and any(p["in"] == "path" for p in parameters):
        codes.add(404)
    for status in sorted(codes):
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    responses["4XX"] = {"$ref": "#/components/responses/Error4XX"}
    spec["responses"] = responses
    return spec


def _response(description: str, schema: Schema | None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation_id(summary: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in summary).split()
    return words[0].lower() + "".join(w.capitalize() for w in words[1:])


def error_responses() -> dict[str, Any]:
    """``components.responses``: one per status, all in the error shape."""
    shape = {"application/json": {"schema": {"$ref": ERROR_REF}}}
    found: dict[str, Any] = {
        f"Error{status}": {"description": words, "content": shape} for status, words in _ERROR_WORDS.items()
    }
    found["Error4XX"] = {"description": "Any other refusal, in the same error shape.", "content": shape}
    return found


ERROR_SCHEMA: Schema = {
    "type": "object",
    "description": "Every refusal under /api/ has this shape.",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "Machine-readable, e.g. `invalid`, `rate_limited`."},
                "message": {"type": "string", "description": "Written for a person."},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Per input: what is wrong with it.",
                },
            },
        }
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The session cookie set by `POST /api/auth/login`. Keep a cookie jar.",
    },
    "csrfToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRFToken",
        "description": "The `csrfToken` from `GET /api/auth/csrf` (or the log-in answer), sent with the same "
        "cookie jar on every POST and DELETE made with the session. It keeps working across log-in and log-out.",
    },
}
