"""The OpenAPI document: every /api/ route of ``app.url_map`` is in it (and nothing else), it is a
valid OpenAPI 3.1 document, it is served at /api/openapi.json and rendered at /api/docs."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from app.openapi import build_document

RULE_PARAM = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def openapi_path(rule: str) -> str:
    return RULE_PARAM.sub(lambda m: "{" + m.group(3) + "}", rule)


def api_rules(app):  # type: ignore[no-untyped-def]
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")]


@pytest.fixture
def document(app):  # type: ignore[no-untyped-def]
    return build_document(app.extensions["settings"].app_url)


def test_every_api_route_is_documented(app, document) -> None:
    missing = [
        f"{method} {rule.rule}"
        for rule in api_rules(app)
        for method in sorted(rule.methods & METHODS)
        if method.lower() not in document["paths"].get(openapi_path(rule.rule), {})
    ]
    assert missing == [], "document these in app/openapi/ (one module per area)"


def test_nothing_is_documented_that_does_not_exist(app, document) -> None:
    routes = {(openapi_path(rule.rule), method.lower()) for rule in api_rules(app) for method in rule.methods & METHODS}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented - routes == set()


def test_path_parameters_match_the_routes(app, document) -> None:
    for rule in api_rules(app):
        item = document["paths"][openapi_path(rule.rule)]
        for method in rule.methods & METHODS:
            declared = {p["name"]: p for p in item[method.lower()].get("parameters", []) if p["in"] == "path"}
            for converter, arguments, name in RULE_PARAM.findall(rule.rule):
                assert name in declared, f"{method} {rule.rule}: {name}"
                if converter == "any":
                    choices = sorted(choice.strip().strip("'\"") for choice in arguments.split(","))
                    assert sorted(declared[name]["schema"]["enum"]) == choices
                if converter == "uuid":
                    assert declared[name]["schema"]["format"] == "uuid"


def test_the_document_is_valid_openapi_3_1(document) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_operation_has_the_error_shape_and_an_id(document) -> None:
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert operation["responses"]["4XX"] == {"$ref": "#/components/responses/Error4XX"}, (method, path)
            assert "422" in operation["responses"], (method, path)
    assert len(ids) == len(set(ids))


def test_a_session_post_declares_the_csrf_header(app, client, document) -> None:
    """What the app enforces is what the document says: every operation that the CSRF check
    guards lists csrfToken, and the ones exempt from it (call credential, webhook) do not."""
    csrf = app.extensions["csrf"]
    exempt = csrf._exempt_views | {blueprint.name for blueprint in csrf._exempt_blueprints}
    for rule in api_rules(app):
        view = app.view_functions[rule.endpoint]
        name = f"{view.__module__}.{view.__name__}"
        blueprint = rule.endpoint.split(".", 1)[0]
        for method in rule.methods & {"POST", "DELETE"}:
            operation = document["paths"][openapi_path(rule.rule)][method.lower()]
            schemes = {scheme for requirement in operation["security"] for scheme in requirement}
            guarded = name not in exempt and blueprint not in exempt
            assert ("csrfToken" in schemes) == guarded, f"{method} {rule.rule}"


def test_served_as_json(client, document) -> None:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == document


def test_rendered_readable_with_no_outside_asset_and_no_inline_script(client, document) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "<script" not in html and "style=" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "every asset comes from this site"
    for path, item in document["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in html
