"""Alembic creates exactly the tables app/core/tables.py describes, and running it twice changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

import migrations
from app.core.tables import Base

# A job row as every schema since 0002 can hold it: SQL literals by column.
OLD_JOB = {
    "id": "'j1'", "visitor_id": "'v1'", "status": "'queued'", "stage": "'queued'", "stage_detail": "''",
    "progress": "0", "cancel_requested": "0", "seed": "1", "animator": "'push-in'", "queue": "'animate'",
    "priority": "0", "photo_width": "1", "photo_height": "1", "photo_bytes": "1", "attempts": "0",
    "created_at": "'2026-01-01'", "expires_at": "'2026-01-02'",
}  # fmt: skip


def insert_old_job(conn: Connection, **fields: str) -> None:
    """Insert OLD_JOB, with `fields` (SQL literals) added or replaced, through a raw statement: the
    database is at an older revision than app/core/tables.py describes."""
    row = {**OLD_JOB, **fields}
    conn.execute(text(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join(row.values())})"))


@contextmanager
def database_at(tmp_path: Path, revision: str) -> Iterator[tuple[Config, Engine]]:
    """An SQLite database migrated up to `revision` (an older schema), its Alembic config to move it
    with, and an engine on it (disposed after)."""
    url = f"sqlite:///{tmp_path}/old.db"
    cfg = migrations.alembic_config(url)
    command.upgrade(cfg, revision)
    engine = create_engine(url)
    try:
        yield cfg, engine
    finally:
        engine.dispose()


def job_columns(engine: Engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("jobs")}


def test_upgrade_creates_exactly_the_model_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new/vivify.db"
    migrations.upgrade(url)
    migrations.upgrade(url)  # idempotent
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            assert MigrationContext.configure(conn).get_current_revision() == "0011"
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
    with database_at(tmp_path, "0004") as (cfg, engine):
        with engine.begin() as conn:
            insert_old_job(conn, idempotency_key="'key-1'")
        assert "request_fingerprint" not in job_columns(engine)
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT idempotency_key, request_fingerprint FROM jobs")).one()
        assert tuple(row) == ("key-1", None)  # kept, with no fingerprint: a retry of it still replays
        command.downgrade(cfg, "0004")
        assert "request_fingerprint" not in job_columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM jobs")).scalar_one() == "j1"


def test_0006_counts_jobs_that_ended_before_it_as_announced(tmp_path: Path) -> None:
    """Upgrading must not make the reconciler re-send `completed` for every job that ever ended."""
    with database_at(tmp_path, "0005") as (cfg, engine):
        with engine.begin() as conn:
            for job_id, status, finished in (
                ("done", "succeeded", "'2026-01-01 10:00:00'"),
                ("q", "queued", "NULL"),
            ):
                insert_old_job(
                    conn, id=f"'{job_id}'", status=f"'{status}'", finished_at=finished,
                    webhook_url="'https://hooks.example/h'",
                )  # fmt: skip
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT id, completed_event_at FROM jobs")).all())
        assert rows["done"] is not None and rows["q"] is None
        command.downgrade(cfg, "0005")
        assert "completed_event_at" not in job_columns(engine)


def test_0007_adds_motion_curves_to_existing_jobs_and_goes_back(tmp_path: Path) -> None:
    with database_at(tmp_path, "0006") as (cfg, engine):
        with engine.begin() as conn:
            insert_old_job(conn)
        assert "motion_curves" not in job_columns(engine)
        command.upgrade(cfg, "head")
        with engine.begin() as conn:
            assert (
                conn.execute(text("SELECT motion_curves FROM jobs")).scalar_one() is None
            )  # older job: none
            conn.execute(text("""UPDATE jobs SET motion_curves = '{"fps": 24, "channels": {"yaw": [0]}}'"""))
        command.downgrade(cfg, "0006")
        assert "motion_curves" not in job_columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM jobs")).scalar_one() == "j1"  # the job itself stays


def test_0008_adds_clip_check_to_existing_jobs_and_goes_back(tmp_path: Path) -> None:
    with database_at(tmp_path, "0007") as (cfg, engine):
        with engine.begin() as conn:
            insert_old_job(conn)
        assert "clip_check" not in job_columns(engine)
        command.upgrade(cfg, "head")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT clip_check FROM jobs")).scalar_one() is None  # older job: none
            conn.execute(text("""UPDATE jobs SET clip_check = '{"passed": true}'"""))
        command.downgrade(cfg, "0007")
        assert "clip_check" not in job_columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM jobs")).scalar_one() == "j1"


def test_0009_gives_succeeded_jobs_their_run_time_and_goes_back(tmp_path: Path) -> None:
    with database_at(tmp_path, "0008") as (cfg, engine):
        with engine.begin() as conn:
            started, finished = "'2026-01-01 10:00:00'", "'2026-01-01 10:00:42.5'"
            insert_old_job(conn, status="'succeeded'", started_at=started, finished_at=finished)
            insert_old_job(conn, id="'j2'")  # queued: no run time
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            runs = dict(conn.execute(text("SELECT id, run_s FROM jobs")).all())
        assert runs == {"j1": 42.5, "j2": None}
        command.downgrade(cfg, "0008")
        assert "run_s" not in job_columns(engine)


def test_0010_gives_jobs_their_clip_length_and_size_and_goes_back(tmp_path: Path) -> None:
    with database_at(tmp_path, "0009") as (cfg, engine):
        with engine.begin() as conn:
            insert_old_job(conn)  # a 4 s HD clip, as every job was
            insert_old_job(
                conn, id="'rec'", motion_curves="""'{"fps": 24, "channels": {"yaw": [0, 0, 0]}}'"""
            )
            insert_old_job(
                conn, id="'long'", motion_curves=f"""'{{"channels": {{"smile": {[0.0] * 108}}}}}'"""
            )
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            rows = {
                r[0]: tuple(r[1:]) for r in conn.execute(text("SELECT id, duration_s, resolution FROM jobs"))
            }
        assert rows == {
            "j1": (4.0, "hd"),
            "rec": (0.125, "hd"),
            "long": (4.5, "hd"),
        }  # a recording's own length
        command.downgrade(cfg, "0009")
        assert not {"duration_s", "resolution"} & job_columns(engine)
        with engine.connect() as conn:
            assert len(conn.execute(text("SELECT id FROM jobs")).all()) == 3


def test_0011_gives_jobs_faces_and_a_unique_share_token_and_goes_back(tmp_path: Path) -> None:
    with database_at(tmp_path, "0010") as (cfg, engine):
        with engine.begin() as conn:
            insert_old_job(conn)
            insert_old_job(conn, id="'j2'")
        command.upgrade(cfg, "head")
        with engine.begin() as conn:
            rows = dict(conn.execute(text("SELECT id, faces FROM jobs")).all())
            assert rows == {"j1": None, "j2": None}  # older jobs move every movable face
            conn.execute(text("UPDATE jobs SET share_token = 'tok' WHERE id = 'j1'"))
        with pytest.raises(IntegrityError), engine.begin() as conn:  # one token names one job
            conn.execute(text("UPDATE jobs SET share_token = 'tok' WHERE id = 'j2'"))
        command.downgrade(cfg, "0010")
        assert not {"faces", "share_token"} & job_columns(engine)
