"""The schema comes from Alembic, and Alembic's history matches the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.db import Base


def test_models_and_migrations_do_not_differ(migrated: str) -> None:
    engine = create_engine(migrated)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_model_table_exists(migrated: str) -> None:
    engine = create_engine(migrated)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_money_columns_are_integers_and_timestamps_carry_a_time_zone() -> None:
    for table in Base.metadata.tables.values():
        for column in table.columns:
            if column.name.endswith("_cents"):
                assert column.type.python_type is int, f"{table.name}.{column.name}"
            if column.name.endswith("_at"):
                assert getattr(column.type, "timezone", False), f"{table.name}.{column.name}"


def test_every_provider_id_is_unique() -> None:
    provider_ids = {
        ("stripe_events", "stripe_event_id"),
        ("transactions", "stripe_checkout_session_id"),
        ("transactions", "stripe_payment_intent_id"),
        ("checkouts", "stripe_checkout_session_id"),
        ("call_requests", "room_name"),
        ("email_outbox", "provider_message_id"),
    }
    for table_name, column_name in provider_ids:
        table = Base.metadata.tables[table_name]
        unique_sets = [
            {c.name for c in con.columns} for con in table.constraints if con.__class__.__name__ == "UniqueConstraint"
        ]
        assert {column_name} in unique_sets, f"{table_name}.{column_name} is not UNIQUE"
