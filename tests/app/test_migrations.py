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
            assert MigrationContext.configure(conn).get_current_revision() == "0007"
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


def test_0005_adds_the_request_fingerprint_to_existing_jobs_and_goes_back(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/old.db"
    cfg = migrations.alembic_config(url)
    command.upgrade(cfg, "0004")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            columns = (
                "id, visitor_id, status, stage, stage_detail, progress, cancel_requested, seed, animator,"
                " queue, priority, idempotency_key, photo_width, photo_height, photo_bytes, attempts,"
                " created_at, expires_at"
            )
            values = (
                "'j1', 'v1', 'queued', 'queued', '', 0, 0, 1, 'push-in', 'animate', 0, 'key-1', 1, 1, 1, 0,"
                " '2026-01-01', '2026-01-02'"
            )
            conn.execute(text(f"INSERT INTO jobs ({columns}) VALUES ({values})"))
        assert "request_fingerprint" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT idempotency_key, request_fingerprint FROM jobs")).one()
        assert tuple(row) == ("key-1", None)  # kept, with no fingerprint: a retry of it still replays
        command.downgrade(cfg, "0004")
        assert "request_fingerprint" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM jobs")).scalar_one() == "j1"
    finally:
        engine.dispose()


def test_0006_counts_jobs_that_ended_before_it_as_announced(tmp_path: Path) -> None:
    """Upgrading must not make the reconciler re-send `completed` for every job that ever ended."""
    from alembic import command
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/old.db"
    cfg = migrations.alembic_config(url)
    command.upgrade(cfg, "0005")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            columns = (
                "id, visitor_id, status, stage, stage_detail, progress, cancel_requested, seed, animator,"
                " queue, priority, photo_width, photo_height, photo_bytes, attempts, created_at, expires_at,"
                " finished_at, webhook_url"
            )
            for job_id, status, finished in (
                ("done", "succeeded", "'2026-01-01 10:00:00'"),
                ("q", "queued", "NULL"),
            ):
                values = (
                    f"'{job_id}', 'v1', '{status}', 'queued', '', 0, 0, 1, 'push-in', 'animate', 0,"
                    f" 1, 1, 1, 0, '2026-01-01', '2026-01-02', {finished}, 'https://hooks.example/h'"
                )
                conn.execute(text(f"INSERT INTO jobs ({columns}) VALUES ({values})"))
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT id, completed_event_at FROM jobs")).all())
        assert rows["done"] is not None and rows["q"] is None
        command.downgrade(cfg, "0005")
        assert "completed_event_at" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    finally:
        engine.dispose()


def test_0007_adds_motion_curves_to_existing_jobs_and_goes_back(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/old.db"
    cfg = migrations.alembic_config(url)
    command.upgrade(cfg, "0006")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            columns = (
                "id, visitor_id, status, stage, stage_detail, progress, cancel_requested, seed, animator,"
                " queue, priority, photo_width, photo_height, photo_bytes, attempts, created_at, expires_at"
            )
            values = (
                "'j1', 'v1', 'queued', 'queued', '', 0, 0, 1, 'push-in', 'animate', 0, 1, 1, 1, 0,"
                " '2026-01-01', '2026-01-02'"
            )
            conn.execute(text(f"INSERT INTO jobs ({columns}) VALUES ({values})"))
        assert "motion_curves" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        command.upgrade(cfg, "head")
        with engine.begin() as conn:
            assert (
                conn.execute(text("SELECT motion_curves FROM jobs")).scalar_one() is None
            )  # older job: none
            conn.execute(text("""UPDATE jobs SET motion_curves = '{"fps": 24, "channels": {"yaw": [0]}}'"""))
        command.downgrade(cfg, "0006")
        assert "motion_curves" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM jobs")).scalar_one() == "j1"  # the job itself stays
    finally:
        engine.dispose()
