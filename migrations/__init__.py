"""Alembic migrations, configured in code (no alembic.ini): tables are created only here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic Config for this folder and a database (default: the configured one)."""
    from alembic.config import Config

    from app.core.config import get_settings

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    # Stored as an attribute, not a main option, so '%' in passwords needs no escaping.
    cfg.attributes["database_url"] = database_url or get_settings().resolved_database_url
    return cfg


def upgrade(database_url: str | None = None) -> None:
    """Bring the database to the newest revision (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")
