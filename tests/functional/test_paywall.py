"""GET /u/<slug>: the public paywall page, its states, its safety and its budget."""

import html as html_lib
import re
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from app.db import db, utcnow
from app.models import Rating, RequestStatus
from app.services.paywall import load_paywall
from app.web.forms.paywall import PaywallForm
from app.web.paywall import render_paywall
from tests.conftest import login
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory, UserFactory
from tests.functional.test_profile_page import assert_no_inline_code

PAGE_BUDGET_BYTES = 50 * 1024


@contextmanager
def count_queries():  # type: ignore[no-untyped-def]
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def add_ratings(session, profile, *stars: int) -> None:  # type: ignore[no-untyped-def]
    for value in stars:
        request = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
        session.add(Rating(call_request_id=request.id, seller_id=profile.user_id, stars=value))
    session.flush()


def meta(html: str, key: str) -> str | None:
    match = re.search(rf'<meta (?:property|name)="{re.escape(key)}" content="([^"]*)">', html)
    return html_lib.unescape(match.group(1)) if match else None


class TestLivePaywall:
    def test_shows_the_offer_and_the_form(self, client, db_session) -> None:
        ProfileFactory(slug="jane", display_name="Jane Doe", bio="Ask me about gardens.", price_cents=2550)
        response = client.get("/u/jane")
        page = response.get_data(as_text=True)
        assert response.status_code == 200
        assert "Jane Doe" in page and "Ask me about gardens." in page
        assert "$25.50" in page and "5-minute video call" in page
        assert '<form class="stack" method="post" action="/u/jane">' in page
        for name in ("buyer_email", "note", "submission_key", "csrf_token"):
            assert f'name="{name}"' in page
        assert 'for="buyer_email"' in page and 'for="note"' in page
        assert 'maxlength="280"' in page and 'type="email"' in page
        assert "not taking calls" not in page

    def test_needs_no_javascript_and_has_no_inline_code(self, client, db_session) -> None:
        ProfileFactory(slug="jane")
        page = client.get("/u/jane").get_data(as_text=True)
        assert "<script" not in page
        assert_no_inline_code(page)

    def test_open_graph_and_twitter_tags(self, app, client, db_session) -> None:
        ProfileFactory(slug="jane", display_name="Jane Doe", bio="Gardens\nand trees.", photo_key=None)
        page = client.get("/u/jane").get_data(as_text=True)
        app_url = app.extensions["settings"].app_url
        assert meta(page, "og:title") == "Jane Doe · 5-minute video call"
        assert meta(page, "og:url") == f"{app_url}/u/jane"
        assert meta(page, "og:type") == "profile"
        assert meta(page, "og:description").startswith("Book a 5-minute video call with Jane Doe for $10.")
        assert "Gardens and trees." in meta(page, "og:description")
        assert meta(page, "twitter:card") == "summary"
        assert meta(page, "twitter:title") == "Jane Doe · 5-minute video call"
        assert meta(page, "og:image") is None  # no photo, no broken preview

    def test_og_image_is_the_absolute_photo_url(self, app, client, db_session) -> None:
        profile = ProfileFactory(slug="jane")
        profile.photo_key = f"photos/{profile.id.hex}/{'a' * 20}"
        db_session.flush()
        page = client.get("/u/jane").get_data(as_text=True)
        expected = f"{app.extensions['settings'].app_url}/media/{profile.photo_key}/512.jpg"
        assert meta(page, "og:image") == expected and meta(page, "twitter:image") == expected
        assert f'src="/media/{profile.photo_key}/512.jpg"' in page
        assert 'alt="Photo of ' in page

    def test_bio_keeps_line_breaks(self, client, db_session) -> None:
        ProfileFactory(slug="jane", bio="First line\nSecond line")
        page = client.get("/u/jane").get_data(as_text=True)
        assert '<p class="bio">First line\nSecond line</p>' in page

    def test_call_length_follows_the_setting(self, app, client, db_session, monkeypatch) -> None:
        settings = app.extensions["settings"]
        monkeypatch.setitem(app.extensions, "settings", settings.replace(call_duration_seconds=600))
        ProfileFactory(slug="jane")
        assert "10-minute video call" in client.get("/u/jane").get_data(as_text=True)

    def test_a_sellers_page_proof_hold_line_and_no_account_links(self, client, db_session) -> None:
        profile = ProfileFactory(slug="jane", display_name="Jane Doe")
        add_ratings(db_session, profile, 5, 5, 4)
        for _ in range(3):
            CallRequestFactory(transaction=TransactionFactory(seller=profile.user), status=RequestStatus.COMPLETED)
        page = client.get("/u/jane").get_data(as_text=True)
        proof = page[page.index('class="seller-proof"') :].split("</ul>", 1)[0]
        assert "4.7" in proof and "from 3 ratings" in proof and "calls completed" in proof
        assert "Paying only places a hold on your card" in page
        for account_link in ('href="/login"', 'href="/signup"', 'href="/dashboard"', "Log in", "Sign up"):
            assert account_link not in page
        assert "<script" not in page

    def test_is_not_cached_by_shared_caches(self, client, db_session) -> None:
        ProfileFactory(slug="jane")
        assert client.get("/u/jane").headers["Cache-Control"] == "private, no-cache"

    def test_uppercase_slug_redirects_to_the_canonical_one(self, client, db_session) -> None:
        ProfileFactory(slug="jane")
        response = client.get("/u/Jane")
        assert response.status_code == 301 and response.headers["Location"].endswith("/u/jane")


class TestXss:
    def test_name_and_bio_are_rendered_harmless(self, client, db_session) -> None:
        ProfileFactory(
            slug="evil",
            display_name='<script>alert("n")</script>',
            bio='"><img src=x onerror=alert(1)>\n<script>alert(2)</script>',
        )
        page = client.get("/u/evil").get_data(as_text=True)
        assert "<script>" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;n&#34;)&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
        # Attribute contexts (meta tags, alt text) cannot be broken out of either.
        assert '"><img' not in page
        assert_no_inline_code(page)


class TestUnavailableSellers:
    @pytest.mark.parametrize(
        ("user_values", "paused"),
        [
            ({"email_verified_at": None}, False),
            ({}, True),
            ({"suspended_at": "now"}, False),
        ],
        ids=["unverified", "paused", "suspended"],
    )
    def test_not_taking_calls_and_no_form(self, client, db_session, user_values: dict, paused: bool) -> None:
        values = {k: utcnow() if v == "now" else v for k, v in user_values.items()}
        ProfileFactory(slug="away", display_name="Away Seller", user=UserFactory(**values), paused=paused)
        response = client.get("/u/away")
        page = response.get_data(as_text=True)
        assert response.status_code == 200
        assert "Away Seller is not taking calls right now." in page
        assert "<form" not in page.split('<main id="main"', 1)[1]
        assert 'name="buyer_email"' not in page
        assert '<meta name="robots" content="noindex">' in page

    def test_deleted_seller_is_gone(self, client, db_session) -> None:
        ProfileFactory(slug="gone", user=UserFactory(deleted_at=utcnow()))
        assert client.get("/u/gone").status_code == 404


class TestNotFound:
    @pytest.mark.parametrize("slug", ["nobody-here", "a_b", "x" * 41, "-dash", "ab"])
    def test_unknown_or_malformed_slug_is_a_404_page(self, client, db_session, slug: str) -> None:
        response = client.get(f"/u/{slug}")
        assert response.status_code == 404
        assert response.mimetype == "text/html"
        assert "Page not found" in response.get_data(as_text=True)

    def test_malformed_slug_does_not_touch_the_database(self, client, db_session) -> None:
        with count_queries() as statements:
            assert client.get("/u/not_a_slug").status_code == 404
        assert statements == []


class TestRatingSummary:
    def test_hidden_below_three_ratings(self, client, db_session) -> None:
        profile = ProfileFactory(slug="rated")
        add_ratings(db_session, profile, 5, 5)
        assert "ratings" not in client.get("/u/rated").get_data(as_text=True)

    def test_average_and_count_from_three_ratings(self, client, db_session) -> None:
        profile = ProfileFactory(slug="rated")
        add_ratings(db_session, profile, 5, 4, 4)
        other = ProfileFactory(slug="other")
        add_ratings(db_session, other, 1, 1, 1)  # another seller's ratings do not count
        page = client.get("/u/rated").get_data(as_text=True)
        assert "<strong>4.3</strong>" in page and "from 3 ratings" in page


class TestRenderPaywallContract:
    """The payments blueprint re-renders the page through render_paywall on refused input."""

    def test_bound_form_errors_message_and_status(self, app, db_session) -> None:
        ProfileFactory(slug="jane", display_name="Jane")
        view = load_paywall(db_session, "jane")
        data = {"buyer_email": "not-an-email", "note": "x" * 281, "submission_key": "k" * 20}
        with app.test_request_context("/u/jane", method="POST", data=data):
            form = PaywallForm(meta={"csrf": False})
            assert not form.validate()
            response = render_paywall(view, form, 422, message="Please fix the fields below.")
        page = response.get_data(as_text=True)
        assert response.status_code == 422
        assert "Enter an email address like name@example.com." in page
        assert "Keep the note under 280 characters." in page
        assert "Please fix the fields below." in page
        assert 'value="not-an-email"' in page and 'aria-invalid="true"' in page
        assert 'value="' + "k" * 20 + '"' in page  # the same submission key is posted again

    def test_blocked_buyer_gets_403_and_a_friendly_message(self, app, db_session) -> None:
        ProfileFactory(slug="jane")
        view = load_paywall(db_session, "jane")
        with app.test_request_context("/u/jane", method="POST", data={"buyer_email": "b@example.com"}):
            response = render_paywall(
                view, PaywallForm(meta={"csrf": False}), 403, message="This seller is not available to you."
            )
        assert response.status_code == 403
        assert "This seller is not available to you." in response.get_data(as_text=True)


class TestBudget:
    """Counted on real commits (``committed_db``), so no test savepoint is mixed into the count."""

    def test_at_most_three_queries_anonymous(self, app, committed_db) -> None:
        profile = ProfileFactory(slug="jane")
        add_ratings(committed_db, profile, 5, 4, 3)
        committed_db.commit()
        client = app.test_client()
        client.get("/u/jane")  # warm-up: first-request costs are not the page's
        with count_queries() as statements:
            response = client.get("/u/jane")
        assert response.status_code == 200 and "from 3 ratings" in response.get_data(as_text=True)
        assert 1 <= len(statements) <= 3, statements

    def test_at_most_three_queries_logged_in(self, app, committed_db) -> None:
        ProfileFactory(slug="jane")
        viewer = UserFactory()
        committed_db.commit()
        client = app.test_client()
        login(client, viewer)
        client.get("/u/jane")
        with count_queries() as statements:
            response = client.get("/u/jane")
        assert response.status_code == 200
        assert len(statements) <= 3, statements
        # Really logged in, yet the seller's page offers the visitor no account links of ours.
        assert client.get("/account").status_code == 200
        assert "/logout" not in response.get_data(as_text=True)

    def test_html_and_css_under_50_kb(self, client, db_session) -> None:
        # Worst case: longest name and bio, a photo and ratings.
        profile = ProfileFactory(slug="big", display_name="W" * 60, bio=("word " * 100)[:500])
        profile.photo_key = f"photos/{profile.id.hex}/{'b' * 20}"
        add_ratings(db_session, profile, 5, 5, 5)
        page = client.get("/u/big")
        html = page.get_data(as_text=True)
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
        assert stylesheets
        css = 0
        for href in stylesheets:
            response = client.get(href)
            assert response.status_code == 200
            css += len(response.data)
            response.close()
        assert len(page.data) + css < PAGE_BUDGET_BYTES, (len(page.data), css)
