"""GET /metrics: the exposition, the counters moving, the bearer token, and multiprocess mode
(several plain processes, then a real gunicorn with several workers)."""

from __future__ import annotations

import glob
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector

from app import metrics
from app.config import PROJECT_ROOT, Settings, metrics_dir
from app.db import utcnow
from app.models import RequestStatus
from app.services import ledger
from tests.conftest import csrf_token, login
from tests.factories import CallRequestFactory, ProfileFactory

BIN = Path(sys.executable).parent
EVERY_METRIC = [
    "chatlink_checkouts_started_total",
    "chatlink_checkouts_completed_total",
    "chatlink_webhook_events_total",
    "chatlink_requests_accepted_total",
    "chatlink_requests_declined_total",
    "chatlink_requests_expired_total",
    "chatlink_calls_started_total",
    "chatlink_calls_ended_total",
    "chatlink_call_end_lateness_seconds",
    "chatlink_emails_sent_total",
    "chatlink_emails_failed_total",
    "chatlink_payouts_requested_total",
    "chatlink_payouts_processed_total",
    "chatlink_payouts_rejected_total",
    "chatlink_http_requests_total",
]


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one series in an exposition (0 when absent)."""
    series = re.escape(f"{name}{{{labels}}}" if labels else name)
    match = re.search(rf"^{series} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def child_env(**extra: str) -> dict[str, str]:
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), **extra}


class TestExposition:
    def test_every_metric_is_exported_in_the_prometheus_format(self, client) -> None:  # type: ignore[no-untyped-def]
        # Labelled series appear once they have been counted at least once.
        metrics.webhook_event("checkout.session.completed", "processed")
        ends_at = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
        metrics.call_ended("timer", ends_at=ends_at, ended_at=ends_at + timedelta(seconds=0.4))
        metrics.email_sent("verify_email")
        metrics.email_failed("verify_email", permanent=True)
        client.get("/api/health")  # counted by the per-request counter once it has finished

        response = client.get("/metrics")

        assert response.status_code == 200
        assert response.content_type == metrics.CONTENT_TYPE_LATEST
        assert response.headers["Cache-Control"] == "no-store"
        text = response.get_data(as_text=True)
        for name in EVERY_METRIC:
            assert f"# TYPE {name.removesuffix('_total')}" in text, name
        assert sample(text, "chatlink_call_end_lateness_seconds_bucket", 'le="0.5"') >= 1

    def test_the_payout_counter_moves_after_a_payout_request(self, client, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = ProfileFactory().user
        call = CallRequestFactory(
            transaction__seller=seller,
            transaction__gross_cents=3000,
            transaction__platform_fee_cents=600,
            transaction__net_cents=2400,
            status=RequestStatus.COMPLETED,
        )
        ledger.record_earning(db_session, call, now=utcnow())
        login(client, seller)
        token = csrf_token(client)
        local_before = REGISTRY.get_sample_value("chatlink_payouts_requested_total")
        exported_before = sample(client.get("/metrics").get_data(as_text=True), "chatlink_payouts_requested_total")

        response = client.post("/api/payouts/request", json={"amountCents": 2000}, headers={"X-CSRFToken": token})

        assert response.status_code == 201
        # This process counted exactly one; the exposition adds every process sharing the directory.
        assert REGISTRY.get_sample_value("chatlink_payouts_requested_total") == local_before + 1
        exported_after = sample(client.get("/metrics").get_data(as_text=True), "chatlink_payouts_requested_total")
        assert exported_after >= exported_before + 1

    def test_requests_are_counted_by_route_not_by_path(self, client, db_session) -> None:  # type: ignore[no-untyped-def]
        labels = {"method": "GET", "route": "/u/<slug>", "status": "404"}
        before = REGISTRY.get_sample_value("chatlink_http_requests_total", labels) or 0
        client.get("/u/nobody-here")
        client.get("/u/nobody-else")
        assert REGISTRY.get_sample_value("chatlink_http_requests_total", labels) == before + 2
        assert REGISTRY.get_sample_value("chatlink_http_requests_total", {**labels, "route": "/u/nobody-here"}) is None

    def test_only_late_ends_are_observed(self) -> None:
        ends_at = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
        count = "chatlink_call_end_lateness_seconds_count"
        before = REGISTRY.get_sample_value(count) or 0
        late_bucket = REGISTRY.get_sample_value("chatlink_call_end_lateness_seconds_bucket", {"le": "5.0"}) or 0
        metrics.call_ended("seller", ends_at=ends_at, ended_at=ends_at - timedelta(seconds=100))  # early
        metrics.call_ended("sweep", ends_at=ends_at, ended_at=ends_at + timedelta(seconds=3))
        metrics.call_ended("admin")
        assert REGISTRY.get_sample_value(count) == before + 1
        assert REGISTRY.get_sample_value("chatlink_call_end_lateness_seconds_bucket", {"le": "5.0"}) == late_bucket + 1
        assert REGISTRY.get_sample_value("chatlink_calls_ended_total", {"ended_by": "seller"}) >= 1

    def test_odd_label_values_are_folded(self) -> None:
        metrics.webhook_event("x" * 200, "processed")
        metrics.webhook_event("bad label\n{}", "processed")
        assert (
            REGISTRY.get_sample_value("chatlink_webhook_events_total", {"type": "other", "outcome": "processed"}) >= 2
        )

    def test_a_failing_metric_never_breaks_the_caller(self, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
        def disk_full(amount: float = 1) -> None:
            raise OSError("No space left on device")

        monkeypatch.setattr(metrics.PAYOUTS_REQUESTED, "inc", disk_full)
        metrics.payout_requested()
        assert [r.getMessage() for r in caplog.records] == ["metric update failed"]

    def test_a_counter_never_goes_down(self) -> None:
        before = REGISTRY.get_sample_value("chatlink_requests_expired_total")
        metrics.requests_expired(-5)
        metrics.requests_expired(2)
        assert REGISTRY.get_sample_value("chatlink_requests_expired_total") == before + 2


class TestWiredIntoOtherModules:
    """The one-line increments placed in the request, webhook and checkout code."""

    def test_accept_and_decline_count_after_commit(self, db_session) -> None:  # type: ignore[no-untyped-def]
        from app.services.lifecycle.decisions import accept_request, decline_request

        seller = ProfileFactory().user
        first, second = (CallRequestFactory(transaction__seller=seller) for _ in range(2))
        accepted = REGISTRY.get_sample_value("chatlink_requests_accepted_total")
        declined = REGISTRY.get_sample_value("chatlink_requests_declined_total")

        accept_request(db_session, first.id, seller_id=seller.id, now=utcnow(), join_window_seconds=900)
        decline_request(db_session, second.id, seller_id=seller.id, now=utcnow())
        assert REGISTRY.get_sample_value("chatlink_requests_accepted_total") == accepted
        db_session.commit()

        assert REGISTRY.get_sample_value("chatlink_requests_accepted_total") == accepted + 1
        assert REGISTRY.get_sample_value("chatlink_requests_declined_total") == declined + 1

    def test_a_webhook_with_a_bad_signature_is_counted(self, client) -> None:  # type: ignore[no-untyped-def]
        labels = {"type": "unverified", "outcome": "invalid"}
        before = REGISTRY.get_sample_value("chatlink_webhook_events_total", labels) or 0
        response = client.post("/api/webhooks/stripe", data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
        assert response.status_code == 400
        assert REGISTRY.get_sample_value("chatlink_webhook_events_total", labels) == before + 1


class TestToken:
    @pytest.fixture
    def guarded(self, make_app, settings: Settings, db_session):  # type: ignore[no-untyped-def]
        return make_app(settings.replace(metrics_token="scrape-me-0123456789")).test_client()

    def test_refused_without_the_token(self, guarded) -> None:  # type: ignore[no-untyped-def]
        response = guarded.get("/metrics")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "chatlink_" not in response.get_data(as_text=True)

    @pytest.mark.parametrize(
        "header", ["Bearer wrong", "Basic scrape-me-0123456789", "scrape-me-0123456789", "Bearer "]
    )
    def test_refused_with_a_wrong_token(self, guarded, header: str) -> None:  # type: ignore[no-untyped-def]
        assert guarded.get("/metrics", headers={"Authorization": header}).status_code == 401

    def test_served_with_the_token(self, guarded) -> None:  # type: ignore[no-untyped-def]
        response = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
        assert response.status_code == 200
        assert "chatlink_payouts_requested_total" in response.get_data(as_text=True)


class TestMultiprocessDirectory:
    def test_the_default_is_under_the_instance_path(self, tmp_path: Path) -> None:
        assert metrics_dir({"INSTANCE_PATH": str(tmp_path)}) == tmp_path / "prometheus"
        assert metrics_dir({"PROMETHEUS_MULTIPROC_DIR": "/srv/m", "INSTANCE_PATH": "/x"}) == Path("/srv/m")

    def test_this_process_runs_in_multiprocess_mode(self) -> None:
        from prometheus_client import values

        assert values.ValueClass._multiprocess is True
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(metrics.METRICS_DIR)
        assert glob.glob(str(metrics.METRICS_DIR / f"counter_{os.getpid()}.db"))

    def test_counts_from_several_processes_add_up(self, tmp_path: Path) -> None:
        shared = tmp_path / "metrics"
        count = "from app import metrics\nfor _ in range({n}): metrics.payout_requested()\nmetrics.email_sent('x')\n"
        for n in (2, 3, 4):
            subprocess.run(
                [sys.executable, "-c", count.format(n=n)],
                cwd=PROJECT_ROOT,
                env=child_env(PROMETHEUS_MULTIPROC_DIR=str(shared)),
                check=True,
                timeout=60,
            )
        scrape = "from app import metrics\nprint(metrics.exposition().decode())"
        text = subprocess.run(
            [sys.executable, "-c", scrape],
            cwd=PROJECT_ROOT,
            env=child_env(PROMETHEUS_MULTIPROC_DIR=str(shared)),
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        ).stdout

        assert len(glob.glob(str(shared / "counter_*.db"))) == 4  # three counters and the scraper
        assert sample(text, "chatlink_payouts_requested_total") == 9
        assert sample(text, "chatlink_emails_sent_total", 'template="x"') == 3

    def test_the_instance_default_is_created_and_used(self, tmp_path: Path) -> None:
        code = "from app import metrics\nmetrics.payout_rejected()\nprint(metrics.METRICS_DIR)"
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=PROJECT_ROOT,
            env=child_env(INSTANCE_PATH=str(tmp_path)),
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        ).stdout
        assert out.strip() == str(tmp_path / "prometheus")
        assert glob.glob(str(tmp_path / "prometheus" / "counter_*.db"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestUnderGunicorn:
    WORKERS = 3
    HITS = 40
    MAX_REQUESTS = 8

    @pytest.fixture
    def server(self, settings: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
        port = free_port()
        shared = tmp_path / "metrics"
        env = child_env(
            APP_ENV="test",
            DATABASE_URL=settings.database_url or "",
            REDIS_URL=settings.redis_url or "",
            CELERY_QUEUE=settings.celery_queue,
            SECRET_KEY=settings.secret_key,
            INSTANCE_PATH=str(tmp_path / "instance"),
            LOG_LEVEL="WARNING",
            PROMETHEUS_MULTIPROC_DIR=str(shared),
        )
        command = [str(BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port}"]
        command += ["--workers", str(self.WORKERS), "--worker-class", "sync", "--log-level", "warning"]
        # Each worker is replaced after a few requests, so the hits are served by many processes
        # (the kernel may well hand every connection to one idle worker) and the counts of
        # workers that have exited must still be in the total.
        command += ["--max-requests", str(self.MAX_REQUESTS)]
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{base}/api/health", timeout=10)
                    break
                except requests.RequestException:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("gunicorn did not start") from None
                    time.sleep(0.2)
            yield base, shared
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def test_every_worker_counts_into_one_total_even_after_it_exits(self, server) -> None:  # type: ignore[no-untyped-def]
        base, shared = server

        def hit(_: int) -> int:
            return requests.get(f"{base}/privacy", timeout=10).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            assert set(pool.map(hit, range(self.HITS))) == {200}

        series = ("chatlink_http_requests_total", 'method="GET",route="/privacy",status="200"')
        # Whichever worker answers the scrape, it reports the sum over all of them.
        for _ in range(6):
            text = requests.get(f"{base}/metrics", timeout=10).text
            assert sample(text, *series) == self.HITS
        per_worker = []
        for path in glob.glob(str(shared / "counter_*.db")):
            merged = MultiProcessCollector.merge([path], accumulate=False)
            per_worker.append(
                sum(
                    s.value
                    for m in merged
                    for s in m.samples
                    if s.name == series[0] and s.labels.get("route") == "/privacy"
                )
            )
        assert sum(per_worker) == self.HITS
        served = [n for n in per_worker if n > 0]
        assert len(served) >= self.HITS // self.MAX_REQUESTS, f"per worker: {per_worker}"
