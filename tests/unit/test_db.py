import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.db import db, on_commit
from app.models import EventLog


class TestOnCommit:
    def test_runs_after_commit(self, db_session) -> None:
        calls: list[str] = []
        db_session.add(EventLog(type="test.event"))
        on_commit(db_session, lambda: calls.append("sent"))
        assert calls == []
        db_session.commit()
        assert calls == ["sent"]

    def test_forgotten_on_rollback(self, db_session) -> None:
        calls: list[str] = []
        on_commit(db_session, lambda: calls.append("sent"))
        db_session.rollback()
        db_session.commit()
        assert calls == []

    def test_a_failing_callback_does_not_undo_the_commit_or_stop_the_others(self, db_session) -> None:
        calls: list[str] = []

        def broken() -> None:
            raise RuntimeError("broker down")

        db_session.add(EventLog(type="test.kept"))
        on_commit(db_session, broken)
        on_commit(db_session, lambda: calls.append("second"))
        db_session.commit()
        assert calls == ["second"]
        assert db_session.scalar(select(func.count()).where(EventLog.type == "test.kept")) == 1


class TestSessionScope:
    def test_commits_on_success(self, db_session) -> None:
        with db.session_scope() as session:
            session.add(EventLog(type="test.scope"))
        assert db_session.scalar(select(func.count()).where(EventLog.type == "test.scope")) == 1

    def test_rolls_back_on_error(self, db_session) -> None:
        try:
            with db.session_scope() as session:
                session.add(EventLog(type="test.scope-error"))
                session.flush()
                raise ValueError("boom")
        except ValueError:
            pass
        assert db_session.scalar(select(func.count()).where(EventLog.type == "test.scope-error")) == 0


class TestOnCommitAndSavepoints:
    def test_a_savepoint_release_is_not_the_commit(self, db_session) -> None:
        calls: list[str] = []
        with db_session.begin_nested():
            on_commit(db_session, lambda: calls.append("sent"))
        assert calls == [], "ran at the SAVEPOINT release, before anything was committed"
        db_session.commit()
        assert calls == ["sent"]


class TestAutocommit:
    def test_each_statement_is_committed_when_it_returns(self, committed_db) -> None:
        insert = EventLog.__table__.insert().values(type="test.autocommit")
        with db.autocommit() as connection:
            connection.execute(insert)
            # Another connection sees the row at once: nothing is left to commit.
            with db.engine.connect() as other:
                seen = other.scalar(select(func.count()).where(EventLog.type == "test.autocommit"))
        assert seen == 1

    def test_a_failed_statement_leaves_nothing_but_the_earlier_ones(self, committed_db) -> None:
        with pytest.raises(IntegrityError), db.autocommit() as connection:
            connection.execute(EventLog.__table__.insert().values(type="test.first"))
            connection.execute(EventLog.__table__.insert().values(type=None))
        assert committed_db.scalars(select(EventLog.type)).all() == ["test.first"]

    def test_under_a_test_transaction_it_joins_it_in_a_savepoint(self, db_session) -> None:
        with db.autocommit() as connection:
            connection.execute(EventLog.__table__.insert().values(type="test.bound"))
        assert db_session.scalar(select(func.count()).where(EventLog.type == "test.bound")) == 1
