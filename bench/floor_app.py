"""The floor under ``bench/webhooks.py``: the least a Flask webhook on this stack can do per post.

It verifies Stripe's signature, stores the event with one autocommitted INSERT ... ON CONFLICT
DO NOTHING, and publishes one Celery message for a new event. That is the work ChatLink's webhook
must do, and nothing else: no app hooks, no logging, no metrics, no pre-ping. ``bench/webhooks.py``
runs it under the same gunicorn settings and senders as the app, before the app, and prints the
app's figures beside it. What the floor cannot reach on a machine, the app cannot either.

Configured by the environment that ``bench/webhooks.py`` passes: ``DATABASE_URL``, ``FLOOR_BROKER``
and ``FLOOR_QUEUE`` (a queue that no worker reads), ``STRIPE_WEBHOOK_SECRET`` and ``FLOOR_POOL_SIZE``
(one connection per gunicorn thread).
"""

from __future__ import annotations

import json
import os
import uuid

import stripe
from celery import Celery
from flask import Flask, request
from sqlalchemy import Uuid, bindparam, create_engine, text
from sqlalchemy.dialects.postgresql import JSONB

TABLE = "bench_floor_inbox"  # a copy of stripe_events that bench/webhooks.py makes and drops
INSERT_EVENT = text(
    "INSERT INTO bench_floor_inbox (id, stripe_event_id, type, livemode, payload, status, attempts, received_at)"
    " VALUES (:id, :event_id, :type, false, :payload, 'received', 0, now())"
    " ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id"
).bindparams(bindparam("id", type_=Uuid()), bindparam("payload", type_=JSONB()))


def create_app() -> Flask:
    secret = os.environ["STRIPE_WEBHOOK_SECRET"]
    engine = create_engine(
        os.environ["DATABASE_URL"], isolation_level="AUTOCOMMIT", pool_size=int(os.environ["FLOOR_POOL_SIZE"])
    )
    celery = Celery("floor", broker=os.environ["FLOOR_BROKER"])
    celery.conf.update(task_default_queue=os.environ["FLOOR_QUEUE"], task_ignore_result=True)
    app = Flask(__name__)

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/webhooks/stripe")
    def webhook() -> tuple[dict[str, object], int]:
        payload = request.get_data(cache=False)
        try:
            stripe.WebhookSignature.verify_header(payload, request.headers.get("Stripe-Signature", ""), secret, 300)
            event = json.loads(payload)
        except (ValueError, stripe.SignatureVerificationError):
            return {"error": "invalid"}, 400
        with engine.connect() as connection:
            row = {"id": uuid.uuid4(), "event_id": event["id"], "type": event["type"], "payload": event}
            row_id = connection.execute(INSERT_EVENT, row).scalar_one_or_none()
        if row_id is not None:
            celery.send_task("tasks.stripe_events.process_stripe_event", (str(row_id),))
        return {"received": True}, 200

    return app
