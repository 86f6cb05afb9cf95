"""A real Celery worker on real Redis: tasks make the round trip, and ETA tasks run on time."""

from __future__ import annotations

import time

import pytest

from tasks.maintenance import ping, sweep

pytestmark = pytest.mark.real_celery


def test_a_task_makes_the_round_trip(celery_worker) -> None:
    sent = time.time()
    answer = ping.apply_async().get(timeout=20)
    assert answer["pong"] is True
    assert sent <= answer["at"] <= time.time()


@pytest.mark.parametrize("countdown", [1.0, 2.0])
def test_a_countdown_task_runs_within_one_second_of_its_eta(celery_worker, countdown: float) -> None:
    eta = time.time() + countdown
    answer = ping.apply_async(countdown=countdown).get(timeout=countdown + 20)
    lateness = answer["at"] - eta
    assert 0 <= lateness < 1.0, f"ran {lateness:+.3f} s from its ETA"


def test_the_sweep_records_a_heartbeat_that_health_reports(celery_worker, app, client) -> None:
    sweep.apply_async()
    deadline = time.monotonic() + 20
    body = client.get("/api/health").get_json()
    while body["worker"] != "ok" and time.monotonic() < deadline:
        time.sleep(0.2)
        body = client.get("/api/health").get_json()
    assert body["worker"] == "ok"
    assert body["workerHeartbeatAgeSeconds"] < 20
