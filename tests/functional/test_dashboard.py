"""/dashboard: link, status, pending requests, placeholders, and the script it loads."""

import re
from datetime import timedelta

from app.db import utcnow
from app.models import RequestStatus
from tests.conftest import login
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory, UserFactory
from tests.functional.test_profile_page import assert_no_inline_code, parse_tags


def dashboard(client) -> str:  # type: ignore[no-untyped-def]
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_data(as_text=True)


class TestAccess:
    def test_needs_login(self, client) -> None:
        response = client.get("/dashboard")
        assert response.status_code in (302, 401)
        if response.status_code == 302:
            assert "/login" in response.headers["Location"]


class TestLinkAndStatus:
    def test_live_seller_sees_an_absolute_link_with_a_copy_button(self, app, client, db_session) -> None:
        profile = ProfileFactory(slug="jane")
        login(client, profile.user)
        page = dashboard(client)
        url = f"{app.extensions['settings'].app_url}/u/jane"
        tags = parse_tags(page)
        link_input = next(attrs for tag, attrs in tags if tag == "input" and attrs.get("id") == "paywall-url")
        assert link_input["value"] == url and "readonly" in link_input
        assert any(t == "button" and a.get("data-copy-target") == "paywall-url" for t, a in tags)
        assert 'for="paywall-url"' in page
        assert "badge-ok" in page and "Live" in page
        assert any(t == "form" and a.get("action") == "/profile/pause" for t, a in tags)

    def test_unverified_seller_gets_a_resend_button_with_csrf(self, client, db_session) -> None:
        profile = ProfileFactory(user=UserFactory(email_verified_at=None))
        login(client, profile.user)
        page = dashboard(client)
        assert "Verify your email" in page
        form = re.search(r'<form method="post" action="/verify-email/resend">(.*?)</form>', page, re.S)
        assert form and 'name="csrf_token"' in form.group(1) and "Resend" in form.group(1)

    def test_paused_seller_can_resume(self, client, db_session) -> None:
        profile = ProfileFactory(paused=True)
        login(client, profile.user)
        page = dashboard(client)
        assert "Paused" in page and "Start taking calls" in page
        assert '<input type="hidden" name="paused" value="0">' in page

    def test_suspended_seller(self, client, db_session) -> None:
        profile = ProfileFactory(user=UserFactory(suspended_at=utcnow()))
        login(client, profile.user)
        assert "Suspended" in dashboard(client)

    def test_seller_without_profile_is_sent_to_set_it_up(self, client, db_session) -> None:
        login(client, UserFactory())
        page = dashboard(client)
        assert "Set up your profile" in page and 'href="/profile"' in page
        assert 'id="paywall-url"' not in page


class TestSections:
    def test_stable_section_ids_and_script(self, client, db_session) -> None:
        profile = ProfileFactory()
        login(client, profile.user)
        page = dashboard(client)
        tags = parse_tags(page)
        ids = {attrs.get("id") for _, attrs in tags}
        assert {"requests", "calls", "balance"} <= ids
        requests = next(a for t, a in tags if a.get("id") == "requests")
        assert requests["data-poll-url"] == "/api/requests?status=PENDING"
        csrf = next(a for t, a in tags if t == "meta" and a.get("name") == "csrf-token")
        assert len(csrf["content"]) > 20
        assert any(t == "script" and a.get("src") == "/static/js/dashboard.js" for t, a in tags)
        assert_no_inline_code(page)

    def test_pending_requests_are_rendered_server_side(self, client, db_session) -> None:
        profile = ProfileFactory()
        waiting = CallRequestFactory(
            transaction=TransactionFactory(
                seller=profile.user, gross_cents=2500, platform_fee_cents=500, net_cents=2000
            ),
            note="<b>Hi</b>\nsecond line",
        )
        CallRequestFactory(transaction=TransactionFactory(seller=profile.user), status=RequestStatus.DECLINED)
        CallRequestFactory(transaction=TransactionFactory(seller=profile.user), expires_at=utcnow() - timedelta(1))
        stranger = CallRequestFactory()
        login(client, profile.user)
        page = dashboard(client)
        assert waiting.buyer_email in page and stranger.buyer_email not in page
        assert "&lt;b&gt;Hi&lt;/b&gt;\nsecond line" in page
        assert "$25.00 · you get $20.00" in page
        assert f'datetime="{waiting.expires_at.isoformat()}"' in page
        tags = parse_tags(page)
        actions = [(a["data-action"], a["data-id"]) for t, a in tags if t == "button" and "data-action" in a]
        assert actions == [("accept", str(waiting.id)), ("decline", str(waiting.id))]
        empty = next(a for t, a in tags if a.get("id") == "requests-empty")
        assert "hidden" in empty

    def test_empty_request_list_says_so(self, client, db_session) -> None:
        profile = ProfileFactory()
        login(client, profile.user)
        tags = parse_tags(dashboard(client))
        empty = next(a for t, a in tags if a.get("id") == "requests-empty")
        assert "hidden" not in empty


class TestScript:
    def test_dashboard_script_is_served_and_speaks_the_api(self, client) -> None:
        response = client.get("/static/js/dashboard.js")
        assert response.status_code == 200
        source = response.get_data(as_text=True)
        response.close()
        assert "X-CSRFToken" in source and '"/api/requests/"' in source
        assert "innerHTML" not in source  # buyer-provided text only ever goes through textContent
        assert "setInterval(refresh, POLL_MS)" in source and "POLL_MS = 5000" in source


def test_dashboard_shows_accepted_calls_with_the_join_link_and_the_balance(client, db_session) -> None:
    from app.db import utcnow
    from app.models import LedgerEntry, LedgerKind, RequestStatus
    from tests.conftest import login
    from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory

    profile = ProfileFactory()
    call = CallRequestFactory(
        transaction=TransactionFactory(seller=profile.user),
        status=RequestStatus.ACCEPTED,
        accepted_at=utcnow(),
        join_key="j" * 43,
    )
    db_session.add(LedgerEntry(seller_id=profile.user_id, kind=LedgerKind.EARNING, amount_cents=1234, currency="usd"))
    db_session.flush()
    login(client, profile.user)
    html = client.get("/dashboard").get_data(as_text=True)
    calls = html.split('id="calls"', 1)[1].split("</section>", 1)[0]
    assert f"/call/{call.id}?t=" in calls and call.buyer_email in calls
    balance = html.split('id="balance"', 1)[1].split("</section>", 1)[0]
    assert "$12.34" in balance
