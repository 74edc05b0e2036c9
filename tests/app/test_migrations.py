"""Alembic creates exactly the tables app/core/tables.py describes, and running it twice changes nothing."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import migrations
from app.core.tables import Base


def test_upgrade_creates_exactly_the_model_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new/vivify.db"
    migrations.upgrade(url)
    migrations.upgrade(url)  # idempotent
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            assert MigrationContext.configure(conn).get_current_revision() == "0004"
        assert set(inspect(engine).get_table_names()) == {"jobs", "submissions", "alembic_version"}
    finally:
        engine.dispose()


def test_create_app_migrates_on_start_when_told(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.web.main import create_app
    from tests.app.api_helpers import make_settings

    s = make_settings(tmp_path, migrate_on_start=True)
    with TestClient(create_app(s)) as c:
        assert c.get("/api/v1/jobs").json() == {"jobs": []}
