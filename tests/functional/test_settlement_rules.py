"""The settlement rules are written once (app/services/settlement_text.py) and shown to both parties:
the buyer before paying (the paywall), the seller before accepting (the dashboard and the requests
page), and everyone on the terms page, with this deployment's own minimum and notice."""

from __future__ import annotations

import pytest

from app.models import RequestStatus
from app.services.settlement_text import RULES
from tests.conftest import login
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory


def shows_every_rule(html: str) -> bool:
    return all(what.replace("'", "&#39;") in html for what, _, _ in RULES)


def test_the_buyer_reads_them_before_paying(client, db_session) -> None:
    profile = ProfileFactory()
    html = client.get(f"/u/{profile.slug}").get_data(as_text=True)
    assert "What happens to the money if the call does not go as planned" in html
    assert shows_every_rule(html) and "1 min connected" in html and "24 hours before the start" in html


@pytest.mark.parametrize("path", ["/dashboard", "/requests"])
def test_the_seller_reads_them_before_accepting(client, db_session, path) -> None:
    profile = ProfileFactory()
    transaction = TransactionFactory(seller=profile.user)
    CallRequestFactory(transaction=transaction, status=RequestStatus.PENDING)
    login(client, profile.user)
    html = client.get(path).get_data(as_text=True)
    assert shows_every_rule(html)


def test_the_terms_carry_them_with_the_configured_minimum(db_session, make_app, settings) -> None:
    app = make_app(settings.replace(early_end_minimum_seconds=90))
    html = app.test_client().get("/terms").get_data(as_text=True)
    assert 'id="settlement"' in html and shows_every_rule(html)
    assert "1 min 30 s connected" in html
    assert "Report a problem" in html or "Reporting a problem" in html
