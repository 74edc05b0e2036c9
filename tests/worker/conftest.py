"""A real SQLite database (migrated by Alembic) and a real local object store per test."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from matplotlib import cbook
from PIL import Image

import migrations
from app.core.config import Settings
from app.core.storage import LocalStore, photo_key
from app.core.tables import Job, new_job_id, utcnow
from models.base import AnimatorUnavailable
from models.push_in import PushInAnimator
from worker.tasks import Sessions, default_sessions


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(
        _env_file=None,
        data_dir=tmp_path,
        animator="push-in",
        task_soft_time_limit_s=20,
        task_time_limit_s=30,
        broker_visibility_timeout_s=60,
        stale_job_after_s=60,
        task_max_retries=2,
    )
    migrations.upgrade(s.resolved_database_url)
    return s


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objects")


@pytest.fixture
def sessions(settings: Settings) -> Sessions:
    return default_sessions(settings)


@pytest.fixture(scope="session")
def photo_jpeg() -> bytes:
    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    img.thumbnail((64, 64))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


MakeJob = Callable[..., str]


@pytest.fixture
def make_job(sessions: Sessions, store: LocalStore, photo_jpeg: bytes) -> MakeJob:
    """Insert a queued job with its photo stored, as the web tier does; returns the job id."""

    def make(**fields: object) -> str:
        job_id = new_job_id()
        store.put(photo_key(job_id), photo_jpeg, "image/jpeg")
        values: dict[str, object] = dict(
            id=job_id,
            visitor_id="visitor-1",
            seed=7,
            animator="push-in",
            photo_key=photo_key(job_id),
            expires_at=utcnow() + timedelta(hours=24),
            enqueued_at=utcnow(),
        )
        values.update(fields)
        with sessions() as session:
            session.add(Job(**values))
            session.commit()
        return job_id

    return make


@pytest.fixture
def load_job(sessions: Sessions) -> Callable[[str], Job | None]:
    """The job row as it is now in the database."""

    def load(job_id: str) -> Job | None:
        with sessions() as session:
            return session.get(Job, job_id)

    return load


class Gated(PushInAnimator):
    """A plug-in animator whose model the worker may not load, as a gated Hub model without a token.

    A worker loads it as `VIVIFY_ANIMATOR=tests.worker.conftest:Gated` (the jobs table keeps 32
    characters) and must exit at start with this message.
    """

    name = "gated"
    MESSAGE = "model example/gated-model is gated: accept its licence on the Hub and give the worker a token"

    def setup(self) -> None:
        raise AnimatorUnavailable(self.MESSAGE)
