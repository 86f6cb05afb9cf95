"""The database: one engine, one session per web request or task, and after-commit hooks.

The request or the task owns the transaction (STYLE.md rule 4). Services receive a ``Session``
and may add and flush, never commit. Side effects that must only happen once the data is safe
(enqueueing a task, delivering mail) are registered with ``on_commit(session, fn)`` and run
right after the commit; a rollback discards them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from flask import Flask, g
from sqlalchemy import Connection, CursorResult, Engine, MetaData, Result, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

log = logging.getLogger(__name__)

# Stable constraint names, so Alembic migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


POOL_SIZE = 8


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (SQLAlchemy types ``execute`` as returning a
    plain ``Result``; for DML it is a ``CursorResult``, which counts them)."""
    return cast(CursorResult[Any], result).rowcount


def utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """Holds the engine and hands out sessions; one instance per Flask app."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._sessionmaker: sessionmaker[Session] | None = None
        self._bound: Connection | None = None

    def init_app(self, app: Flask, url: str) -> None:
        self.engine = create_engine(
            url,
            pool_pre_ping=True,
            # One connection kept per gunicorn thread (the Procfile runs 8): with fewer, the extra
            # threads' overflow connections are closed on return and opened again on the next
            # request, a new PostgreSQL backend each time.
            pool_size=POOL_SIZE,
            max_overflow=10,
            pool_timeout=5,
            connect_args={"connect_timeout": 5},
        )
        self._sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        app.extensions["db"] = self
        app.teardown_appcontext(self._close_request_session)

    def require_engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("Database.init_app() was not called")
        return self.engine

    def bind_to(self, connection: Connection) -> None:
        """Send every session through ``connection``, each commit becoming a savepoint.

        Tests use this to run each test inside one outer transaction that is rolled back.
        """
        self._sessionmaker = sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        self._bound = connection

    def unbind(self) -> None:
        """Undo ``bind_to``: sessions use the engine again."""
        self._sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._bound = None

    def new_session(self) -> Session:
        assert self._sessionmaker is not None, "Database.init_app() was not called"
        return self._sessionmaker()

    @property
    def session(self) -> Session:
        """The session of the current web request (created on first use)."""
        if "db_session" not in g:
            g.db_session = self.new_session()
        session: Session = g.db_session
        return session

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement commits on its own, for work that is one statement.

        The webhook's only write is one INSERT, and Stripe waits for the answer: in a session it
        would cost BEGIN, the INSERT and COMMIT, three round trips; here it is one, and the row is
        committed when ``execute`` returns. (Under ``bind_to``: the test's connection, in a savepoint.)
        """
        if self._bound is not None:
            with self._bound.begin_nested():
                yield self._bound
            return
        with self.require_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A unit of work for a task or a script: commit on success, roll back on error."""
        session = self.new_session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _close_request_session(self, exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is None:
            return
        try:
            if exc is not None or session.in_transaction():
                # A view that did not commit has nothing to keep.
                session.rollback()
        except SQLAlchemyError:
            # The connection died under the request (PostgreSQL restarting): the answer, a 503
            # from the error handlers, is already made; a teardown error would turn it into a 500.
            log.warning("request session could not roll back; its connection is dropped")
        finally:
            session.close()


db = Database()


def on_commit(session: Session, fn: Callable[[], object]) -> None:
    """Run ``fn`` once ``session``'s current transaction commits; forget it on rollback."""
    if not session.in_transaction():
        # Tie the callback to a transaction, so that a rollback before any SQL ran forgets it too.
        session.begin()
    session.info.setdefault("after_commit", []).append(fn)


class _Collected:
    """An after-commit callback that hands everything collected under ``key`` to ``flush`` at once."""

    def __init__(self, key: str, flush: Callable[[list[object]], object]) -> None:
        self.key, self.flush = key, flush
        self.items: list[object] = []

    def __call__(self) -> None:
        self.flush(self.items)


def on_commit_collect(session: Session, key: str, item: object, flush: Callable[[list[object]], object]) -> None:
    """Collect ``item`` under ``key`` for the current transaction; once it commits, ``flush(items)``
    runs once with everything collected. The collection is one of the transaction's ``on_commit``
    callbacks, so a rollback forgets it with the others."""
    pending = session.info.get("after_commit", []) if session.in_transaction() else []
    collected = next((fn for fn in pending if isinstance(fn, _Collected) and fn.key == key), None)
    if collected is None:
        collected = _Collected(key, flush)
        on_commit(session, collected)
    collected.items.append(item)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # SQLAlchemy fires this on a SAVEPOINT release too; nothing is committed until the outer commit
    callbacks = session.info.pop("after_commit", [])
    for fn in callbacks:
        try:
            fn()
        except Exception:
            # The data is committed; a failed side effect is recovered by the sweep (an inbox
            # event or outbox row left pending), so it must not turn a success into an error.
            log.exception("after-commit callback failed", extra={"callback": getattr(fn, "__name__", repr(fn))})


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction: object) -> None:
    if not session.in_transaction():
        session.info.pop("after_commit", None)
