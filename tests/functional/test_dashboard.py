"""/dashboard: the seller's overview (what needs them now, earnings, rating, recent calls and what
buyers said), their link and status, plain forms for every action, and the live update."""

import re
from datetime import UTC, datetime, timedelta

from app.db import utcnow
from app.models import CancelReason, LedgerEntry, LedgerKind, Rating, RequestStatus, Role
from tests.conftest import login
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory, UserFactory
from tests.functional.test_profile_page import assert_no_inline_code, parse_tags


def dashboard(client) -> str:  # type: ignore[no-untyped-def]
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_data(as_text=True)


def section(html: str, section_id: str) -> str:
    start = html.index(f'id="{section_id}"')
    return html[start:].split("</section>", 1)[0]


class TestAccess:
    def test_needs_login(self, client) -> None:
        response = client.get("/dashboard")
        assert response.status_code in (302, 401)
        if response.status_code == 302:
            assert "/login" in response.headers["Location"]

    def test_an_admin_without_a_seller_page_lands_on_the_admin_area(self, client, db_session) -> None:
        login(client, UserFactory(role=Role.ADMIN))
        response = client.get("/dashboard")
        assert response.status_code == 302 and response.headers["Location"].endswith("/admin")

    def test_an_admin_who_also_sells_keeps_their_dashboard(self, client, db_session) -> None:
        profile = ProfileFactory(user=UserFactory(role=Role.ADMIN))
        login(client, profile.user)
        assert "Needs you now" in dashboard(client)


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


class TestNeedsYouNow:
    def test_pending_requests_soonest_to_expire_first_with_time_left_and_plain_forms(self, client, db_session) -> None:
        profile = ProfileFactory()
        later = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
        sooner = CallRequestFactory(
            transaction=TransactionFactory(
                seller=profile.user, gross_cents=2500, platform_fee_cents=500, net_cents=2000
            ),
            note="<b>Hi</b>\nsecond line",
            expires_at=utcnow() + timedelta(hours=2, minutes=30),
        )
        CallRequestFactory(transaction=TransactionFactory(seller=profile.user), status=RequestStatus.DECLINED)
        CallRequestFactory(transaction=TransactionFactory(seller=profile.user), expires_at=utcnow() - timedelta(1))
        stranger = CallRequestFactory()
        login(client, profile.user)
        now = section(dashboard(client), "now")
        assert now.index(sooner.buyer_email) < now.index(later.buyer_email)
        assert stranger.buyer_email not in now
        assert "&lt;b&gt;Hi&lt;/b&gt;\nsecond line" in now
        assert "$25.00 · you get $20.00" in now
        assert re.search(r"2 h (29|30) min left</span></span> to answer", now)
        for item in (sooner, later):
            assert f'action="/requests/{item.id}/accept"' in now
            assert f'action="/requests/{item.id}/decline"' in now
        assert now.count('<details class="decline-box">') == 2 and 'name="message"' in now
        assert 'value="dashboard"' in now
        assert 'id="requests-empty"' not in now

    def test_times_are_time_elements_in_utc_with_the_zone_said(self, client, db_session) -> None:
        profile = ProfileFactory()
        created = datetime(2026, 12, 8, 15, 4, tzinfo=UTC)
        CallRequestFactory(
            transaction=TransactionFactory(seller=profile.user), created_at=created, expires_at=utcnow() + timedelta(1)
        )
        login(client, profile.user)
        page = dashboard(client)
        assert '<time datetime="2026-12-08T15:04:00Z" data-local="datetime">8 Dec 2026, 15:04 UTC</time>' in page
        assert any(t == "script" and a.get("src") == "/static/js/times.js" for t, a in parse_tags(page))

    def test_an_accepted_call_has_its_join_button_at_once(self, client, db_session) -> None:
        profile = ProfileFactory()
        call = CallRequestFactory(
            transaction=TransactionFactory(seller=profile.user),
            status=RequestStatus.ACCEPTED,
            accepted_at=utcnow(),
            join_deadline=utcnow() + timedelta(minutes=15),
            join_key="j" * 43,
        )
        login(client, profile.user)
        now = section(dashboard(client), "now")
        calls = now[now.index('id="calls"') :]
        assert f"/call/{call.id}?t=" in calls and call.buyer_email in calls and "Join call" in calls
        assert "Join by" in calls and "min left" in calls

    def test_nothing_to_do_says_so(self, client, db_session) -> None:
        login(client, ProfileFactory().user)
        now = section(dashboard(client), "now")
        assert 'id="requests-empty"' in now and "Nothing needs you right now" in now


class TestNumbersAndFeedback:
    def test_earnings_this_week_and_month_from_the_ledger(self, client, db_session) -> None:
        profile = ProfileFactory()
        now = utcnow()
        monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        rows = [
            (1200, now),  # this week and month
            (300, monday - timedelta(seconds=1)),  # last week; this month unless the month began since
            (700, first - timedelta(seconds=1)),  # last month
        ]
        for cents, at in rows:
            entry = LedgerEntry(seller_id=profile.user_id, kind=LedgerKind.EARNING, amount_cents=cents, currency="usd")
            entry.created_at = at
            db_session.add(entry)
        payout = LedgerEntry(seller_id=profile.user_id, kind=LedgerKind.PAYOUT, amount_cents=-900, currency="usd")
        db_session.add(payout)
        db_session.flush()
        login(client, profile.user)
        numbers = section(dashboard(client), "numbers")
        week = re.search(r'data-stat="week">([^<]+)<', numbers).group(1)
        month = re.search(r'data-stat="month">([^<]+)<', numbers).group(1)
        expected_month = 1200 + (300 if monday - timedelta(seconds=1) >= first else 0)
        assert week == "$12.00"
        assert month == f"${expected_month / 100:.2f}"

    def test_the_seller_reads_each_rating_and_its_comment(self, client, db_session) -> None:
        profile = ProfileFactory()
        for stars, comment in ((5, "Clear & kind <3"), (3, "")):
            call = CallRequestFactory(
                transaction=TransactionFactory(seller=profile.user), status=RequestStatus.COMPLETED, ended_at=utcnow()
            )
            db_session.add(Rating(call_request_id=call.id, seller_id=profile.user_id, stars=stars, comment=comment))
        db_session.flush()
        login(client, profile.user)
        page = dashboard(client)
        ratings = section(page, "ratings")
        assert "“Clear &amp; kind &lt;3”" in ratings
        assert "5 out of 5" in ratings and "3 out of 5" in ratings
        assert "4.0" in section(page, "numbers") and "2 ratings" in section(page, "numbers")
        assert "Recent calls" in section(page, "recent") and "Completed" in section(page, "recent")

    def test_recent_calls_come_the_last_to_finish_first(self, client, db_session) -> None:
        """Ordered by when each call finished (ended, declined or cancelled), not by when it was
        requested: a call booked long ago that ended an hour ago comes first."""
        profile, now = ProfileFactory(), utcnow()
        finished = {
            "booked-long-ago@example.org": dict(status=RequestStatus.COMPLETED, ended_at=now - timedelta(hours=1)),
            "declined@example.org": dict(status=RequestStatus.DECLINED, declined_at=now - timedelta(days=1)),
            "cancelled@example.org": dict(
                status=RequestStatus.CANCELLED, cancelled_at=now - timedelta(days=2), cancel_reason=CancelReason.EXPIRED
            ),
        }
        for age_days, (email, fields) in zip((9, 2, 3), finished.items(), strict=True):
            transaction = TransactionFactory(seller=profile.user, buyer_email=email)
            CallRequestFactory(transaction=transaction, created_at=now - timedelta(days=age_days), **fields)
        CallRequestFactory(transaction=TransactionFactory(seller=profile.user, buyer_email="waiting@example.org"))
        db_session.flush()
        login(client, profile.user)
        recent = section(dashboard(client), "recent")
        assert "waiting@example.org" not in recent
        shown = sorted(finished, key=recent.index)
        assert shown == ["booked-long-ago@example.org", "declined@example.org", "cancelled@example.org"]


class TestLiveAndScripts:
    def test_a_live_refresh_leaves_the_flash_to_the_next_real_page(self, client, db_session) -> None:
        """The seller clicks Accept while the old page's long-poll answers: live.js fetches the
        page again (with its header) before the browser follows the redirect. That fetch must not
        take the "Accepted" message the seller is about to be shown."""
        profile = ProfileFactory()
        login(client, profile.user)
        with client.session_transaction() as session:
            session["_flashes"] = [("ok", "Accepted. The call is ready to join.")]
        refreshed = client.get("/dashboard", headers={"X-ChatLink-Live": "1"}).get_data(as_text=True)
        assert "Accepted. The call is ready to join." not in refreshed
        assert 'class="flash' not in refreshed
        assert "Accepted. The call is ready to join." in dashboard(client)
        assert "Accepted. The call is ready to join." not in dashboard(client)  # shown once

    def test_live_regions_the_long_poll_and_the_fallback(self, client, db_session) -> None:
        profile = ProfileFactory()
        login(client, profile.user)
        page = dashboard(client)
        tags = parse_tags(page)
        main = next(a for t, a in tags if t == "main")
        assert main["data-live-url"] == "/api/live/seller" and main["data-live-version"].isdigit()
        regions = {a.get("id") for t, a in tags if "data-live-region" in a}
        assert regions == {"now", "numbers", "recent", "ratings"}
        assert '<noscript><meta http-equiv="refresh" content="60"></noscript>' in page
        scripts = {a.get("src") for t, a in tags if t == "script"}
        assert {"/static/js/dashboard.js", "/static/js/live.js"} <= scripts
        assert_no_inline_code(page)

    def test_the_scripts_never_put_markup_from_data_into_the_page(self, client) -> None:
        for name in ("dashboard", "live", "times"):
            response = client.get(f"/static/js/{name}.js")
            assert response.status_code == 200
            source = response.get_data(as_text=True)
            response.close()
            assert "innerHTML" not in source and "eval(" not in source, name


def test_the_balance_card_stays(client, db_session) -> None:
    profile = ProfileFactory()
    db_session.add(LedgerEntry(seller_id=profile.user_id, kind=LedgerKind.EARNING, amount_cents=1234, currency="usd"))
    db_session.flush()
    login(client, profile.user)
    assert "$12.34" in section(dashboard(client), "balance")
