"""The OpenAPI 3.1 document of every ``/api/`` route, served at ``/api/openapi.json`` and rendered
at ``/api/docs``.

The document is assembled from one module per area (``auth``, ``buyers``, ``sellers``, ``calls``,
``live``, ``admin``, ``operations``): each has ``TAG`` (name, description), ``PATHS`` (OpenAPI path items)
and optionally ``SCHEMAS`` (component schemas). A new route goes into its area's ``PATHS``,
written with ``app.openapi._build.operation``, which adds the error responses, the security
requirement and the CSRF header from ``auth=`` and ``changes=``. A new area is a new module
added to ``AREAS``. ``tests/functional/test_openapi.py`` fails for any ``/api/`` route of
``app.url_map`` left undocumented, and validates the document; the fuzz in
``tests/functional/test_api_fuzz.py`` sends generated requests to every operation from it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from app.openapi import admin, auth, buyers, calls, live, operations, scheduling, sellers
from app.openapi._build import ERROR_SCHEMA, SECURITY_SCHEMES, error_responses

AREAS: tuple[ModuleType, ...] = (auth, buyers, sellers, scheduling, calls, live, admin, operations)
VERSION = "1.0.0"

DESCRIPTION = """\
ChatLink's JSON API: the same actions as the pages, for scripts and mobile clients.

* JSON in, JSON out. Money is in integer cents, times are ISO 8601 in UTC.
* Authentication is the cookie session of the pages: keep a cookie jar, `POST /api/auth/login`.
* Every POST or DELETE made with the session, and the account and checkout POSTs, send the CSRF
  token of `GET /api/auth/csrf` in the `X-CSRFToken` header (over HTTPS, also a same-origin
  `Referer`). The token belongs to the cookie jar and survives log-in and log-out.
* The call endpoints (`/api/video/*`) and the buyer's rating and report carry the party's call
  credential in the body instead.
* Every refusal is `{"error": {"code", "message", "fields"}}` with a fitting status.
"""


def build_document(app_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for area in AREAS:
        for path, item in area.PATHS.items():
            if path in paths:
                raise ValueError(f"{path} is documented twice ({area.__name__})")
            paths[path] = item
        schemas.update(getattr(area, "SCHEMAS", {}))
    return {
        "openapi": "3.1.0",
        "info": {"title": "ChatLink API", "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": app_url}],
        "tags": [{"name": area.TAG[0], "description": area.TAG[1]} for area in AREAS],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "responses": error_responses(),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
