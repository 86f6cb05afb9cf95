import json
import logging

import sentry_sdk

from app.config import Settings
from app.observability import JsonFormatter, QuietSweep, init_sentry, mask_email


class TestMaskEmail:
    def test_keeps_the_first_letter_and_the_domain(self) -> None:
        assert mask_email("jane.doe@example.com") == "j***@example.com"

    def test_masks_every_address_inside_text(self) -> None:
        text = "from a.b@x.org to Someone+tag@mail.example.co.uk"
        assert mask_email(text) == "from a***@x.org to S***@mail.example.co.uk"

    def test_leaves_other_text_alone(self) -> None:
        assert mask_email("no address here @ all") == "no address here @ all"
        assert mask_email(None) == ""


class TestJsonLogs:
    def record(self, msg: str, **extra: object) -> dict:
        record = logging.makeLogRecord({"name": "chatlink.test", "levelname": "INFO", "msg": msg, **extra})
        return json.loads(JsonFormatter().format(record))

    def test_one_json_object_per_line_with_extras(self) -> None:
        entry = self.record("checkout started", seller_id="abc")
        assert entry["msg"] == "checkout started"
        assert entry["level"] == "INFO"
        assert entry["seller_id"] == "abc"
        assert entry["ts"].endswith("+00:00")

    def test_emails_are_masked_in_messages_and_extras(self) -> None:
        entry = self.record("mail to buyer@example.org failed", recipient="buyer@example.org")
        assert "buyer@example.org" not in json.dumps(entry)
        assert entry["recipient"] == "b***@example.org"

    def test_request_id_is_included_inside_a_request(self, app) -> None:
        with app.test_request_context("/"):
            from flask import g

            g.request_id = "req-12345678"
            entry = self.record("hello")
        assert entry["request_id"] == "req-12345678"


class TestQuietSweep:
    def passes(self, name: str, level: int, msg: str, *args: object) -> bool:
        return QuietSweep().filter(logging.makeLogRecord({"name": name, "levelno": level, "msg": msg, "args": args}))

    def test_drops_celerys_info_lines_about_the_sweep(self) -> None:
        sweep = "tasks.maintenance.sweep"
        assert not self.passes("celery.beat", logging.INFO, "Scheduler: Sending due task sweep (%s)", sweep)
        assert not self.passes("celery.app.trace", logging.INFO, "Task %s[%s] succeeded", sweep, "1")

    def test_keeps_other_tasks_failures_and_the_apps_own_lines(self) -> None:
        assert self.passes(
            "celery.app.trace", logging.INFO, "Task %s[%s] succeeded", "tasks.email_delivery.send_email", "1"
        )
        assert self.passes("celery.app.trace", logging.ERROR, "Task %s[%s] raised", "tasks.maintenance.sweep", "1")
        assert self.passes("tasks.maintenance", logging.INFO, "sweep tasks.maintenance.sweep")


class TestSentry:
    def test_stays_off_without_a_dsn(self) -> None:
        init_sentry(Settings.from_env({}, dotenv=False))
        assert not sentry_sdk.get_client().is_active()

    def test_starts_with_a_dsn(self) -> None:
        try:
            init_sentry(Settings.from_env({"SENTRY_DSN": "http://public@127.0.0.1:9/1"}, dotenv=False))
            client = sentry_sdk.get_client()
            assert client.is_active()
            assert not client.should_send_default_pii()
        finally:
            sentry_sdk.init(dsn=None)
