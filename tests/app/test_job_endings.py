"""Each way a job ends, through the one object that ends it (app.core.endings.JobEnding): the state in a
real database, the worker's real Prometheus counters, the `completed` event in the real embedded
broker's queue folder, and the clip objects in a real local store."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.config import Settings
from app.core.db import session_factory
from app.core.endings import JobEnding
from app.core.queue import make_producer
from app.core.storage import LocalStore, poster_key, video_key
from app.core.tables import Job, Submission, new_job_id, utcnow
from app.core.webhooks import event_id
from tests.app.api_helpers import broker_messages
from worker import metrics

HOOK = "https://hooks.example/h"


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    with session_factory(settings.resolved_database_url)() as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objects")


@pytest.fixture
def ending(settings: Settings, store: LocalStore) -> JobEnding:
    """As the worker builds it: its counters, a producer, its store."""
    return JobEnding(settings, celery=make_producer(settings), store=store, count=metrics.record_job)


@pytest.fixture
def new_job(session: Session) -> Callable[..., Job]:
    """A queued job with a webhook, in a queue of its own (so its counters start at 0), and the visitor's
    submission that spent the allowance on it."""

    def make(**fields: object) -> Job:
        job_id = new_job_id()
        values: dict[str, object] = dict(
            id=job_id,
            visitor_id="visitor-1",
            seed=7,
            animator="push-in",
            queue=f"animate.{job_id}",
            photo_key=f"jobs/{job_id}/photo.jpg",
            expires_at=utcnow() + timedelta(hours=24),
            webhook_url=HOOK,
        )
        session.add(Job(**(values | fields)))
        session.add(Submission(visitor_id="visitor-1", ip_hash="h"))
        session.commit()
        return session.get(Job, job_id)

    return make


def running(session: Session, job: Job, worker: str = "w") -> int:
    """Claim the job as a worker does; its attempt (the run's fence)."""
    claimed = jobs.claim(session, job.id, worker)
    assert claimed is not None
    return claimed.attempts


def completed_events(settings: Settings) -> list[tuple[str, str]]:
    """(job id, webhook-id) of each `completed` event waiting in the broker."""
    out = []
    for path in broker_messages(settings):
        message = json.loads(path.read_text())
        if message["headers"]["task"] == "vivify.webhook":
            _url, event, payload, msg_id = json.loads(base64.b64decode(message["body"]))[0]
            if event == "completed":
                out.append((payload["id"], msg_id))
    return out


def counted(job: Job, status: str) -> float:
    return metrics.JOBS.labels(job.queue, status)._value.get()


def submissions(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Submission)) or 0


def assert_ended(session: Session, settings: Settings, job: Job, status: str) -> None:
    """Recorded, counted once, announced once under the job's one id, and the allowance not given back."""
    session.refresh(job)
    assert job.status == status and job.finished_at is not None
    assert counted(job, status) == 1
    assert completed_events(settings) == [
        (job.id, event_id(settings.webhook_signing_key, job.id, "completed"))
    ]
    assert job.completed_event_at is not None  # the reconciler will not send it again
    assert submissions(session) == 1


def test_a_job_succeeds(session, settings, store, ending, new_job) -> None:
    job = new_job()
    attempt = running(session, job)
    store.put(video_key(job.id), b"mp4", "video/mp4")
    store.put(poster_key(job.id), b"jpeg", "image/jpeg")
    outcome = ending.succeeded(
        session,
        job.id,
        video_key=video_key(job.id),
        poster_key=poster_key(job.id),
        video_info={"bytes": 3},
        stage_seconds={"encoding": 0.5},
        attempt=attempt,
    )
    assert outcome == "succeeded"
    assert_ended(session, settings, job, "succeeded")
    assert job.video_key == video_key(job.id) and store.get(video_key(job.id)) == b"mp4"
    assert metrics.STAGE_TIME.labels(job.queue, "encoding")._sum.get() == 0.5


def test_a_job_fails(session, settings, ending, new_job) -> None:
    job = new_job()
    attempt = running(session, job)
    figures = {"passed": False, "failures": ["the face changed"]}
    outcome = ending.failed(session, job.id, "clip_check_failed", "No.", attempt=attempt, clip_check=figures)
    assert outcome == "failed"
    assert_ended(session, settings, job, "failed")
    assert (job.error_code, job.error_message, job.clip_check) == ("clip_check_failed", "No.", figures)
    assert metrics.FAILURES.labels(job.queue, "clip_check_failed")._value.get() == 1


def test_a_job_times_out(session, settings, ending, new_job) -> None:
    job = new_job()
    assert ending.timed_out(session, job.id, "Past 2 s.", attempt=running(session, job)) == "failed"
    assert_ended(session, settings, job, "failed")
    assert (job.error_code, job.error_message) == ("timeout", "Past 2 s.")
    # At the hard limit the process exits next: the state only, and the reconciler sends the event.
    last = new_job()
    assert (
        ending.timed_out(session, last.id, "Past 3 s.", attempt=running(session, last), exiting=True)
        == "failed"
    )
    session.refresh(last)
    assert (last.status, last.error_code, last.completed_event_at) == ("failed", "timeout", None)
    assert [j for j, _ in completed_events(settings)] == [job.id]


def test_a_queued_job_is_canceled(session, settings, ending, new_job) -> None:
    job = new_job()
    assert ending.canceled(session, job.id) == "canceled"
    assert_ended(session, settings, job, "canceled")
    assert job.stage == "canceled"


def test_a_superseded_run_ends_nothing(session, settings, store, ending, new_job) -> None:
    """A run whose job another claim took over (its worker looked dead) records, counts and sends
    nothing, and leaves the clip at the job's keys, which are the new run's too. A job that was canceled
    while its run rendered keeps no clip."""
    job = new_job()
    old = running(session, job, "w1")
    session.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    session.commit()
    new = jobs.claim(session, job.id, "w2", take_over_after_s=60)
    assert new is not None and new.attempts == old + 1
    clip = {
        "video_key": video_key(job.id),
        "poster_key": poster_key(job.id),
        "video_info": {},
        "stage_seconds": {},
    }
    store.put(video_key(job.id), b"mp4", "video/mp4")
    for end in (
        lambda: ending.succeeded(session, job.id, **clip, attempt=old),
        lambda: ending.failed(session, job.id, "internal_error", "late", attempt=old),
        lambda: ending.timed_out(session, job.id, "late", attempt=old),
        lambda: ending.canceled(session, job.id, attempt=old),
    ):
        assert end() == "skipped"
    session.refresh(job)
    assert (job.status, job.worker, job.attempts, job.error_code) == ("running", "w2", old + 1, None)
    assert all(counted(job, s) == 0 for s in ("succeeded", "failed", "canceled"))
    assert completed_events(settings) == [] and store.get(video_key(job.id)) == b"mp4"

    assert jobs.request_stop(session, job.id) and ending.canceled(session, job.id, attempt=new.attempts)
    assert ending.succeeded(session, job.id, **clip, attempt=new.attempts) == "skipped"
    with pytest.raises(KeyError):
        store.get(video_key(job.id))  # the canceled job's clip went again
