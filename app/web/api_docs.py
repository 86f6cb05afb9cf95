"""``GET /api/openapi.json`` (the OpenAPI document, ``app/openapi/``) and ``GET /api/docs``, the same
document rendered on the server as a page: no script, no asset from anywhere else."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template

from app.extensions import limiter
from app.openapi import build_document

bp = Blueprint("api_docs", __name__)

METHODS = ("get", "post", "put", "patch", "delete")


def api_document() -> dict[str, Any]:
    """Built once per app: it depends only on the code and ``APP_URL``."""
    extensions = current_app.extensions
    if "openapi" not in extensions:
        extensions["openapi"] = build_document(extensions["settings"].app_url)
    document: dict[str, Any] = extensions["openapi"]
    return document


@bp.get("/api/openapi.json")
@limiter.exempt
def openapi_json() -> Response:
    response = jsonify(api_document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/api/docs")
@limiter.exempt
def docs() -> Response:
    document = api_document()
    sections = [
        {"name": tag["name"], "description": tag["description"], "operations": _operations(document, tag["name"])}
        for tag in document["tags"]
    ]
    html = render_template("api_docs.html", document=document, sections=sections)
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _operations(document: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    found = []
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is not None and tag in operation.get("tags", ()):
                found.append({"method": method.upper(), "path": path, "anchor": operation["operationId"], **operation})
    return found
