import redis as redis_lib
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app.db import db
from app.services.health import record_heartbeat


class TestHealth:
    def test_ok_when_database_and_redis_answer(self, client, redis) -> None:
        response = client.get("/api/health")
        assert response.status_code == 200
        body = response.get_json()
        assert body["status"] == "ok" and body["db"] == "ok" and body["redis"] == "ok"

    def test_reports_the_worker_heartbeat_age(self, app, client, redis) -> None:
        record_heartbeat(redis, app.extensions["settings"].celery_queue)
        body = client.get("/api/health").get_json()
        assert body["worker"] == "ok"
        assert 0 <= body["workerHeartbeatAgeSeconds"] < 5

    def test_old_heartbeat_is_stale(self, app, client, redis) -> None:
        import time

        record_heartbeat(redis, app.extensions["settings"].celery_queue, now=time.time() - 3600)
        assert client.get("/api/health").get_json()["worker"] == "stale"

    def test_503_naming_the_database_when_it_is_down(self, app, client, monkeypatch) -> None:
        dead = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/x", connect_args={"connect_timeout": 1})
        monkeypatch.setattr(db, "engine", dead)
        response = client.get("/api/health")
        dead.dispose()
        assert response.status_code == 503
        assert response.get_json()["db"] == "down"
        assert response.get_json()["redis"] == "ok"

    def test_503_naming_redis_when_it_is_down(self, app, client, monkeypatch) -> None:
        monkeypatch.setitem(app.extensions, "redis", redis_lib.Redis(unix_socket_path="/nonexistent/redis.sock"))
        response = client.get("/api/health")
        assert response.status_code == 503
        assert response.get_json()["redis"] == "down"


class TestErrorShapes:
    def test_api_404_is_json(self, client) -> None:
        response = client.get("/api/no-such-thing")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"

    def test_page_404_is_html(self, client) -> None:
        response = client.get("/no-such-page")
        assert response.status_code == 404
        assert response.mimetype == "text/html"
        assert b"Page not found" in response.data

    def test_405_is_json_on_the_api(self, client) -> None:
        response = client.post("/api/health")
        # CSRF runs before routing for POSTs; either way the answer is a JSON error, never a 500.
        assert response.status_code in (400, 405)
        assert "error" in response.get_json()


class TestOutages:
    """A database or Redis outage in the middle of a request is a clean 503, not a 500."""

    def _app_with_route(self, make_app, settings, exc: Exception):  # type: ignore[no-untyped-def]
        app = make_app(settings)

        def boom():  # type: ignore[no-untyped-def]
            raise exc

        app.add_url_rule("/api/boom", "api_boom", boom)
        app.add_url_rule("/boom", "page_boom", boom)
        return app

    def test_database_outage_is_a_json_503_on_the_api(self, make_app, settings) -> None:
        app = self._app_with_route(make_app, settings, OperationalError("SELECT 1", {}, Exception("server closed")))
        response = app.test_client().get("/api/boom")
        assert response.status_code == 503
        assert response.get_json()["error"] == {
            "code": "unavailable",
            "message": "ChatLink is briefly unavailable. Please try again in a moment.",
            "fields": {"service": "database"},
        }
        assert response.headers["Retry-After"] == "5"

    def test_a_rollback_that_fails_as_the_database_goes_away_keeps_the_503(self, make_app, settings) -> None:
        """Seen in the PostgreSQL restart drill: the view's error is answered with a 503, then the
        teardown's ROLLBACK meets the dying connection and raised past every handler (a 500)."""
        app = make_app(settings)
        dying = OperationalError("ROLLBACK", {}, Exception("terminating connection due to administrator command"))

        def connection_gone() -> None:
            raise dying

        def dies_mid_transaction():  # type: ignore[no-untyped-def]
            session = db.session
            session.execute(text("SELECT 1"))
            session.rollback = connection_gone  # type: ignore[method-assign]
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

        app.add_url_rule("/api/dies", "api_dies", dies_mid_transaction)

        response = app.test_client().get("/api/dies")

        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "unavailable"

    def test_redis_outage_is_a_friendly_page(self, make_app, settings) -> None:
        app = self._app_with_route(make_app, settings, redis_lib.ConnectionError("refused"))
        response = app.test_client().get("/boom")
        assert response.status_code == 503
        assert b"Back in a moment" in response.data


class TestSecurityHeaders:
    def test_every_response_carries_them(self, client) -> None:
        response = client.get("/")
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "Strict-Transport-Security" not in response.headers  # production only

    def test_request_id_is_echoed(self, client) -> None:
        response = client.get("/", headers={"X-Request-ID": "abcdef12-3456"})
        assert response.headers["X-Request-ID"] == "abcdef12-3456"


class TestTrustedProxies:
    def test_client_address_comes_from_the_trusted_proxy_header(self, make_app, settings) -> None:
        from flask import request

        app = make_app(settings.replace(trusted_proxies=1))
        seen = {}

        @app.get("/whoami")
        def whoami():  # type: ignore[no-untyped-def]
            seen["addr"] = request.remote_addr
            return "ok"

        app.test_client().get(
            "/whoami", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base={"REMOTE_ADDR": "10.0.0.2"}
        )
        assert seen["addr"] == "203.0.113.9"

    def test_without_trusted_proxies_the_header_is_ignored(self, make_app, settings) -> None:
        from flask import request

        app = make_app(settings)
        seen = {}

        @app.get("/whoami")
        def whoami():  # type: ignore[no-untyped-def]
            seen["addr"] = request.remote_addr
            return "ok"

        app.test_client().get(
            "/whoami", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base={"REMOTE_ADDR": "10.0.0.2"}
        )
        assert seen["addr"] == "10.0.0.2"


def test_favicon_is_served(client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response.headers["Location"])
    assert icon.mimetype == "image/svg+xml"
    icon.close()
