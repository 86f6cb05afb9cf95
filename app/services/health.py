"""Liveness of the parts ChatLink needs: the database, Redis, and the workers (through the
heartbeat that every sweep records)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import redis
from sqlalchemy import Engine, text

HEARTBEAT_KEY = "chatlink:{queue}:worker-heartbeat"


@dataclass(frozen=True)
class HealthReport:
    db: str
    redis: str
    worker: str
    worker_heartbeat_age_seconds: float | None

    @property
    def ok(self) -> bool:
        return self.db == "ok" and self.redis == "ok"

    def as_dict(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "unavailable",
            "db": self.db,
            "redis": self.redis,
            "worker": self.worker,
            "workerHeartbeatAgeSeconds": self.worker_heartbeat_age_seconds,
        }


def record_heartbeat(client: redis.Redis, queue: str, now: float | None = None) -> None:
    client.set(HEARTBEAT_KEY.format(queue=queue), f"{now or time.time():.3f}", ex=3600)


def check_health(engine: Engine, client: redis.Redis, queue: str, *, stale_after: float) -> HealthReport:
    db_state = "ok"
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        db_state = "down"

    redis_state, age = "ok", None
    try:
        client.ping()
        beat = cast(bytes | str | None, client.get(HEARTBEAT_KEY.format(queue=queue)))
        age = round(max(0.0, time.time() - float(beat)), 1) if beat else None
    except redis.RedisError:
        redis_state = "down"

    worker = "unknown" if age is None else ("ok" if age <= stale_after else "stale")
    return HealthReport(db=db_state, redis=redis_state, worker=worker, worker_heartbeat_age_seconds=age)
