"""The scale-out drill's browser half: the built-in room's two pages served by two machines.

Two machines (web, worker and beat each, ``tests/e2e/drills/scale_out.py``) share one PostgreSQL
and one Redis. The seller's call page comes from machine A and the buyer's from machine B; the
pages' WebRTC offer, answer and candidates travel through each machine's signalling endpoints
and meet in Redis. The media connect in two real Chromiums (loopback only), the clock starts,
and the call ends once, on time, with both pages hanging up.
"""

from __future__ import annotations

import re

from tests.e2e.browser.test_call_room import wait_js, watch
from tests.e2e.drills.flow import accept, buyer_join_url, log_in, seed_seller
from tests.e2e.drills.scale_out import events_seen, paid_request, print_events, scale_out_stack, stop_beats

DURATION = 8


def test_the_rooms_two_pages_on_two_machines_connect_and_the_call_ends_once(new_context, artifacts) -> None:  # type: ignore[no-untyped-def]
    with scale_out_stack("scale-out-room", CALL_DURATION_SECONDS=str(DURATION), JOIN_WINDOW_SECONDS="120") as stack:
        a, b = stack.a, stack.b
        seller = seed_seller(a)
        call_id = paid_request(stack, seller, "room", checkout_on=a, webhook_on=b)
        seller_link = accept(b, log_in(a, seller), call_id)["joinUrl"]
        # Links carry APP_URL (machine A, as the load balancer's address); the buyer lands on B.
        buyer_link = buyer_join_url(a, call_id).replace(a.url, b.url)
        assert seller_link.startswith(a.url) and buyer_link.startswith(b.url)

        problems: list[str] = []
        seller_page, buyer_page = new_context().new_page(), new_context().new_page()
        for page, link in ((seller_page, seller_link), (buyer_page, buyer_link)):
            watch(page, problems)
            page.goto(link)
            page.locator("#join-button:enabled").click(timeout=30000)
        for page in (seller_page, buyer_page):
            # Media flows both ways: the other party's video has frames.
            wait_js(page, "document.getElementById('remote-video').videoWidth > 0", timeout=30)
            assert re.fullmatch(r"0:0[0-8]", page.locator("#call-countdown").inner_text())
        buyer_page.screenshot(path=str(artifacts / "scale-out-room-buyer-on-b.png"), full_page=True)
        for page in (seller_page, buyer_page):
            page.locator("#call-ended").wait_for(state="visible", timeout=(DURATION + 10) * 1000)

        ended = a.rows("SELECT status, ended_at - ends_at AS late FROM call_requests WHERE id = :id", id=call_id)
        assert [row.status for row in ended] == ["COMPLETED"]
        assert ended[0].late.total_seconds() < 3
        # The end happened once, whichever of the two workers, two beats or two pages got there first.
        events = a.rows("SELECT type FROM event_log WHERE ref_id = :id AND type LIKE 'call.%'", id=str(call_id))
        assert sorted(row.type for row in events).count("call.ended") == 1
        assert a.scalar("SELECT count(*) FROM ledger_entries WHERE call_request_id = :id", id=call_id) == 1
        print_events(events_seen(a, stop_beats(a)))
        assert [p for p in problems if "status of 409" not in p] == []
