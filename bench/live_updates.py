"""How fast a change shows on the other party's open page: p95 over 20 changes, in real Chromium.

    .venv/bin/python bench/live_updates.py [--changes 20] [--no-netns]

It re-runs itself inside a loopback-only network namespace (tests/e2e/netns.py), starts private
embedded engines and the whole product (gunicorn with two processes, a Celery worker and beat),
and drives the scenario of ``tests/e2e/live_latency.py``: the seller's dashboard and the buyer's
status page stay open while the buyer pays and cancels and the seller accepts and declines. It
prints each change and the p50/p95/max. Goal: p95 <= 2 s. The exit status is 1 when it is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pageload import in_loopback_namespace  # noqa: E402 (the benchmarks share it)

# platformdirs warns when XDG_RUNTIME_DIR is unset (root in a container); its fallback works.
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

IN_NETNS = "CHATLINK_LIVE_BENCH_IN_NETNS"
GOAL_P95_SECONDS = 2.0
SELLER_EMAIL, SELLER_PASSWORD = "bench-seller@example.com", "bench-password-123"  # bench/paywall.py's seller


def run(count: int) -> bool:
    from pageload import seeded_stack
    from playwright.sync_api import sync_playwright

    from tests.e2e import live_latency
    from tests.e2e.browser.conftest import CHROMIUM, CHROMIUM_FLAGS

    with tempfile.TemporaryDirectory(prefix="chatlink-live-") as tmp:
        engines, stack, slug = seeded_stack(Path(tmp))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)

                def make_context():  # type: ignore[no-untyped-def]
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    context.set_default_timeout(30000)
                    return context

                scenario = live_latency.Scenario(stack.url, make_context, SELLER_EMAIL, SELLER_PASSWORD, slug)
                changes = scenario.run(count)
                browser.close()
        finally:
            stack.stop()
            engines.stop()
    print("changes made by one party, seen on the other party's open page (gunicorn: 2 processes)\n")
    print(live_latency.report(changes))
    return live_latency.p95([c.seconds for c in changes]) <= GOAL_P95_SECONDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--no-netns", action="store_true", help="run on this machine's network namespace")
    args = parser.parse_args()
    if not args.no_netns:
        in_loopback_namespace(IN_NETNS, Path(__file__))
    sys.exit(0 if run(args.changes) else 1)


if __name__ == "__main__":
    main()
