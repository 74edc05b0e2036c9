"""Alembic environment: runs revisions against the URL that migrations.upgrade() passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from app.core.config import get_settings
from app.core.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("database_url") or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # Several web processes may start at once: one migrates, the others wait.
                conn.execute(text("SELECT pg_advisory_lock(7157451)"))
                conn.commit()
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(7157451)"))
                conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
