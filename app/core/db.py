"""Database engine and sessions. Tables are created only by Alembic (migrations/)."""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings, get_settings


def make_engine(url: str, *, pool_size: int | None = None, max_overflow: int | None = None) -> Engine:
    """An engine for `url`. `pool_size` / `max_overflow` (Settings.database_pool_size and
    database_max_overflow) override the per-database defaults below."""
    if url.startswith("sqlite"):
        # One connection per request thread (anyio's pool has 40): SQLite connections are cheap, and a
        # request must never wait on the pool behind others doing slow work.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=40 if pool_size is None else pool_size,
            max_overflow=10 if max_overflow is None else max_overflow,
            pool_timeout=10,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            # WAL lets the web process read while the worker writes progress.
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10 if pool_size is None else pool_size,
        max_overflow=20 if max_overflow is None else max_overflow,
        pool_timeout=10,
    )


def engine_for(settings: Settings) -> Engine:
    """The engine Settings describe: its database and its pool."""
    return make_engine(
        settings.resolved_database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )


@functools.lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> Engine:
    return make_engine(url) if url else engine_for(get_settings())


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


def rows_changed(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched: its result is a CursorResult, which `execute` does not say."""
    return cast(CursorResult[Any], result).rowcount
