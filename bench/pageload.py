"""How fast a buyer on a phone sees a seller's paywall: TTFB, LCP and bytes, in a real Chromium.

    .venv/bin/python bench/pageload.py [--runs 5] [--no-netns]

It re-runs itself inside a loopback-only network namespace (tests/e2e/netns.py), starts private
embedded engines and the whole product (gunicorn, a Celery worker and beat, as the browser tests
do), seeds a live seller with a photo and ratings, and loads ``/u/<slug>`` cold ``--runs`` times
under emulated 4G (9 Mbps down, 1.5 Mbps up, 170 ms latency) and a 4x CPU slowdown. It prints each
run and the medians:

* TTFB: from the document's ``Network.responseReceived`` timing (request start to the last response
  header), which includes the emulated latency (navigation timing does not see it);
* LCP: the last ``largest-contentful-paint`` entry, from navigation start;
* bytes over the wire (``Network.loadingFinished``), in total and without the seller's photo.

Then it loads the page with JavaScript disabled and checks that it is complete: the seller's name,
the price and a working form, and not one ``<script>``. Goals: LCP < 1.0 s, TTFB < 300 ms,
< 50 KB without the photo, no script needed. The exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# platformdirs warns when XDG_RUNTIME_DIR is unset (root in a container); its fallback works.
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

IN_NETNS = "CHATLINK_PAGELOAD_IN_NETNS"
DOWN_BPS, UP_BPS, LATENCY_MS, CPU_SLOWDOWN = 9_000_000, 1_500_000, 170, 4
GOALS = {"lcp_ms": 1000.0, "ttfb_ms": 300.0, "kb_without_photo": 50.0}
LCP_JS = """() => new Promise(resolve => {
  new PerformanceObserver(list => {
    const entries = list.getEntries();
    resolve(entries[entries.length - 1].startTime);
  }).observe({type: 'largest-contentful-paint', buffered: true});
})"""


@dataclass
class Sample:
    ttfb_ms: float
    lcp_ms: float
    total_bytes: int
    photo_bytes: int
    requests: int

    @property
    def kb_without_photo(self) -> float:
        return (self.total_bytes - self.photo_bytes) / 1000


def load_once(browser, url: str) -> Sample:  # type: ignore[no-untyped-def]
    """One cold load (fresh context, cache off) under the emulated phone and network."""
    context = browser.new_context(viewport={"width": 412, "height": 823}, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    urls: dict[str, str] = {}
    sizes: dict[str, int] = {}
    document: dict = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], int(e["encodedDataLength"])))
    cdp.on("Network.responseReceived", lambda e: document.update(e["response"]) if e["type"] == "Document" else None)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": LATENCY_MS, "downloadThroughput": DOWN_BPS / 8, "uploadThroughput": UP_BPS / 8},
    )
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": CPU_SLOWDOWN})
    try:
        page.goto(url, wait_until="load")
        lcp = float(page.evaluate(LCP_JS))
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    photo = sum(size for rid, size in sizes.items() if "/media/" in urls.get(rid, ""))
    return Sample(
        ttfb_ms=float(document["timing"]["receiveHeadersEnd"]),
        lcp_ms=lcp,
        total_bytes=sum(sizes.values()),
        photo_bytes=photo,
        requests=len(sizes),
    )


def check_without_script(browser, url: str, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """What is missing when the page is loaded with JavaScript off (empty when nothing is)."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(url)
        problems = []
        if page.locator("h1").inner_text().strip() != name:
            problems.append("the seller's name is not the heading")
        if not page.locator(".price").is_visible():
            problems.append("no price")
        if not page.get_by_label("Your email").is_editable():
            problems.append("no email field")
        if not page.get_by_role("button", name="Request a call").is_enabled():
            problems.append("no submit button")
        if (scripts := page.locator("script").count()) != 0:
            problems.append(f"{scripts} <script> elements")
        return problems
    finally:
        context.close()


def seeded_stack(scratch: Path):  # type: ignore[no-untyped-def]
    """Engines, a migrated database with the paywall benchmark's seller, and the live stack."""
    from paywall import SLUG, bench_engines, prepare

    from app.config import Settings
    from tests.e2e.browser.conftest import start_stack

    engines = bench_engines(scratch)
    database_url, redis_url = engines.start()
    env = {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": f"pageload-{uuid.uuid4().hex[:8]}",
        "INSTANCE_PATH": str(scratch / "instance"),
        "SECRET_KEY": "pageload-secret-key-that-is-long-enough-0123456789",
        "LOG_LEVEL": "WARNING",
    }
    try:
        prepare(env)
        stack = start_stack(Settings.from_env(env, dotenv=False), scratch / "logs")
    except BaseException:
        engines.stop()
        raise
    return engines, stack, SLUG


def verdict(value: float, goal: float) -> str:
    return "ok" if value < goal else "MISSED"


def report(samples: list[Sample], no_script_problems: list[str]) -> bool:
    print(f"paywall, cold loads under emulated 4G ({DOWN_BPS / 1e6:g}/{UP_BPS / 1e6:g} Mbps, {LATENCY_MS} ms)")
    print(f"and a {CPU_SLOWDOWN}x CPU slowdown; phone viewport 412x823 @2x\n")
    print(f"{'run':>4} {'TTFB ms':>8} {'LCP ms':>8} {'KB total':>9} {'KB w/o photo':>13} {'requests':>9}")
    for n, s in enumerate(samples, 1):
        print(
            f"{n:>4} {s.ttfb_ms:>8.0f} {s.lcp_ms:>8.0f} {s.total_bytes / 1000:>9.1f} "
            f"{s.kb_without_photo:>13.1f} {s.requests:>9}"
        )
    median = {
        "ttfb_ms": statistics.median(s.ttfb_ms for s in samples),
        "lcp_ms": statistics.median(s.lcp_ms for s in samples),
        "kb_total": statistics.median(s.total_bytes / 1000 for s in samples),
        "kb_without_photo": statistics.median(s.kb_without_photo for s in samples),
    }
    print(
        f"{'med':>4} {median['ttfb_ms']:>8.0f} {median['lcp_ms']:>8.0f} "
        f"{median['kb_total']:>9.1f} {median['kb_without_photo']:>13.1f}\n"
    )
    lines = (
        ("TTFB", "ttfb_ms", "ms", ""),
        ("LCP", "lcp_ms", "ms", ""),
        ("bytes", "kb_without_photo", "KB", " w/o photo"),
    )
    for label, key, unit, note in lines:
        value, goal = median[key], GOALS[key]
        print(f"{label:<5} {value:7.1f} {unit}{note} (goal < {goal:g} {unit}): {verdict(value, goal)}")
    print(f"without JavaScript: {'complete, no <script>' if not no_script_problems else '; '.join(no_script_problems)}")
    return all(median[key] < goal for key, goal in GOALS.items()) and not no_script_problems


def run(runs: int) -> bool:
    from playwright.sync_api import sync_playwright

    from tests.e2e.browser.conftest import CHROMIUM, CHROMIUM_FLAGS

    with tempfile.TemporaryDirectory(prefix="chatlink-pageload-") as tmp:
        engines, stack, slug = seeded_stack(Path(tmp))
        url = f"{stack.url}/u/{slug}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                load_once(browser, url)  # warm the server (first request of each worker), not measured
                samples = [load_once(browser, url) for _ in range(runs)]
                problems = check_without_script(browser, url, "Bench Seller")
                browser.close()
        finally:
            stack.stop()
            engines.stop()
    return report(samples, problems)


def in_loopback_namespace(flag: str, script: Path) -> None:
    """Re-run ``script`` inside a loopback-only network namespace (tests/e2e/netns.py), the same
    isolation as the browser tests, unless this process already runs there (``flag`` is set)."""
    if os.environ.get(flag) == "1":
        return
    os.environ[flag] = "1"
    os.chdir(ROOT)
    command = [sys.executable, "-m", "tests.e2e.netns", sys.executable, str(script.resolve()), *sys.argv[1:]]
    os.execv(sys.executable, command)  # noqa: S606 (our own interpreter, no shell)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-netns", action="store_true", help="run on this machine's network namespace")
    args = parser.parse_args()
    if not args.no_netns:
        in_loopback_namespace(IN_NETNS, Path(__file__))
    sys.exit(0 if run(args.runs) else 1)


if __name__ == "__main__":
    main()
