"""Two machines' worth of ChatLink on one PostgreSQL and one Redis, for the scale-out drills.

Machine A and machine B each run what the Procfile runs, a gunicorn ``web``, a Celery ``worker``
and a Celery ``beat``, with their own instance directory (so nothing is shared through a local
disk: photos go to an S3 bucket on a real S3-speaking server, moto_server on loopback) and the
same settings otherwise, as behind a load balancer. Both beats run: every periodic job must be
repeat-safe. ``APP_URL`` names machine A, as it would name the load balancer.

``events_seen`` reads each process's log back: the requests each web instance served (gunicorn's
access log) and the tasks each worker ran (the app keeps Celery's lines about the sweep out of the
logs, so the sweeps each beat sent are read from its schedule file instead, once it has stopped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shelve
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from tests.e2e.drills.conftest import Drill, drill_stack
from tests.e2e.drills.flow import Seller, pay_builtin, post_event, start_checkout, wait_request
from tests.e2e.make_run import free_port
from tests.fakes.s3 import S3Server

MACHINES = ("a", "b")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{20,32}")
_ACCESS = re.compile(r'"(GET|POST|PUT|DELETE|HEAD) ([^ ?"]+)[^"]*" (\d{3})')
_TASK = re.compile(r"Task (tasks\.[a-z_.]+)\[[^\]]+\] succeeded")


@dataclass
class ScaleOut:
    drill: Drill  # machine A's view: drill.url is web A
    b: Drill  # machine B's view of the same stack: b.url is web B
    s3: S3Server
    bucket: str

    @property
    def a(self) -> Drill:
        return self.drill

    def machine(self, name: str) -> Drill:
        return self.a if name == "a" else self.b

    def instance_path(self, name: str) -> str:
        return f"{self.drill.scratch}/instance-{name}"


@contextlib.contextmanager
def scale_out_stack(name: str, **overrides: str) -> Iterator[ScaleOut]:
    """Start both machines (web, worker and beat each) and wait until both answer healthy."""
    with S3Server() as s3, drill_stack(name, **overrides) as drill:
        bucket = s3.create_bucket(f"drill-{name}")
        drill.env.update(s3.env(bucket))
        stack = ScaleOut(drill, dataclasses.replace(drill, port=free_port()), s3, bucket)
        for machine in MACHINES:
            env = {"INSTANCE_PATH": stack.instance_path(machine)}
            drill.start("web", name=f"web-{machine}", port=stack.machine(machine).port, env=env)
            drill.start("worker", name=f"worker-{machine}", env=env)
            drill.start("beat", name=f"beat-{machine}", env=env)
        for machine in MACHINES:
            stack.machine(machine).wait_healthy(worker=True, timeout=120)
        yield stack


def paid_request(stack: ScaleOut, seller: Seller, tag: str, *, checkout_on: Drill, webhook_on: Drill) -> uuid.UUID:
    """A buyer opens a checkout on one machine and pays; Stripe's webhook lands on the other (or
    the same): the request, once the event is processed."""
    session_id = start_checkout(checkout_on, seller, f"{tag}@buyers.example.org")
    assert post_event(webhook_on, pay_builtin(stack.a, session_id)).status_code == 200
    return wait_request(stack.a, session_id)


def stop_beats(drill: Drill) -> dict[str, int]:
    """Stop both beats (each saves its schedule on the way out) and return how many sweeps each
    sent, from the run count Celery keeps in the schedule file."""
    sent = {}
    for machine in MACHINES:
        name = f"beat-{machine}"
        drill.kill(name, signal.SIGTERM)
        # The file is the beat process's own, written by the test run: trusted.
        with shelve.open(str(drill.scratch / f"celerybeat-schedule-{name}"), flag="r") as schedule:  # noqa: S301
            sent[name] = schedule["entries"]["sweep"].total_run_count
    return sent


def events_seen(drill: Drill, sweeps_sent: dict[str, int]) -> dict[str, Counter[str]]:
    """What each process did: ``{"web-a": Counter({"POST /api/... 200": 3}), ...}``, from the web
    and worker logs and the beats' run counts."""
    seen: dict[str, Counter[str]] = {}
    for role in ("web", "worker"):
        for machine in MACHINES:
            name = f"{role}-{machine}"
            counter: Counter[str] = Counter()
            for line in drill.logs(name).splitlines():
                if role == "web" and (hit := _ACCESS.search(line)):
                    method, path, status = hit.groups()
                    counter[f"{method} {_UUID.sub('<id>', path)} {status}"] += 1
                elif role == "worker" and (hit := _TASK.search(line)):
                    counter[hit.group(1)] += 1
            seen[name] = counter
    for name, count in sweeps_sent.items():
        seen[name] = Counter({"sent tasks.maintenance.sweep": count})
    return seen


def print_events(seen: dict[str, Counter[str]]) -> None:
    print("\nevents seen on each instance:")
    for name, counter in seen.items():
        print(f"  {name}: {sum(counter.values())}")
        for what, count in sorted(counter.items()):
            print(f"      {count:5d}  {what}")
