"""A malformed or unreachable engine URL stops start-up with one line naming it."""

import subprocess
import sys

import pytest

from app.config import ConfigError


def test_unreachable_database_names_database_url(make_app, settings) -> None:
    bad = settings.replace(database_url="postgresql+psycopg://postgres@127.0.0.1:1/chatlink")
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: cannot connect"):
        make_app(bad)


def test_unreachable_redis_names_redis_url(make_app, settings) -> None:
    bad = settings.replace(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match=r"^REDIS_URL: cannot connect"):
        make_app(bad)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "sqlite:///x.db"}, "chatlink: DATABASE_URL: scheme 'sqlite' is not supported"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "chatlink: REDIS_URL: cannot connect"),
    ],
)
def test_wsgi_exits_with_one_clear_line(project_root, settings, env, expected) -> None:
    base = {"PATH": "/usr/bin:/bin", "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=project_root,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = [
        line
        for line in result.stderr.strip().splitlines()
        if "RuntimeDirWarning" not in line and "user_runtime_dir" not in line
    ]
    assert lines[-1].startswith(expected)
    assert "Traceback" not in result.stderr
