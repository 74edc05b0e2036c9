"""The reconciler and the retention purge against a real SQLite database and local store."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from app.core.storage import LocalStore, StorageUnavailable, poster_key, video_key
from app.core.tables import Job, Submission, utcnow
from worker.maintenance import max_attempts, purge_expired, reconcile


def stored(store: LocalStore) -> list[str]:
    """Every key in the store."""
    keys = store.keys()
    return list(keys)


def ago(seconds: float):
    return utcnow() - timedelta(seconds=seconds)


def test_reconciler_resends_lost_jobs_and_fails_jobs_that_keep_losing_workers(
    settings, sessions, make_job, load_job
):
    old = settings.stale_job_after_s + 30
    lost_message = make_job(enqueued_at=ago(old), created_at=ago(old))
    never_enqueued = make_job(enqueued_at=None, created_at=ago(old))
    dead_worker = make_job(status="running", attempts=1, heartbeat_at=ago(old), started_at=ago(old))
    hopeless = make_job(
        status="running", attempts=max_attempts(settings), heartbeat_at=ago(old), started_at=ago(old)
    )
    healthy_running = make_job(status="running", attempts=1, heartbeat_at=ago(1), started_at=ago(100))
    fresh_queued = make_job(enqueued_at=ago(1))
    done = make_job(status="succeeded", created_at=ago(old))

    sent: list[tuple[str, str]] = []
    counts = reconcile(settings, sessions, lambda job_id, queue: sent.append((job_id, queue)))

    assert sorted(sent) == sorted((j, "animate") for j in (lost_message, never_enqueued, dead_worker))
    assert counts == {"requeued": 3, "failed": 1}
    failed = load_job(hopeless)
    assert (failed.status, failed.error_code) == ("failed", "worker_lost")
    assert "stopped responding" in failed.error_message
    assert load_job(dead_worker).status == "running"  # status never moves backwards
    for untouched in (healthy_running, fresh_queued, done):
        assert untouched not in {j for j, _ in sent}
    assert load_job(done).status == "succeeded"

    # Re-sent jobs are marked: the next run does not send them again (no message storm).
    again: list[tuple[str, str]] = []
    assert reconcile(settings, sessions, lambda j, q: again.append((j, q))) == {"requeued": 0, "failed": 0}
    assert again == []


def test_no_job_stays_running_forever(settings, sessions, make_job, load_job):
    """A job whose worker dies on every attempt ends failed after max_attempts re-sends."""
    job_id = make_job(status="running", attempts=1, heartbeat_at=ago(10_000))
    for attempt in range(1, max_attempts(settings) + 2):  # noqa: B007 (checked after the loop)
        reconcile(settings, sessions, lambda j, q: None)
        with sessions() as session:  # the re-sent task is claimed, then its worker dies again
            job = session.get(Job, job_id)
            if job.status != "running":
                break
            job.attempts += 1
            job.heartbeat_at = ago(10_000)
            session.commit()
    job = load_job(job_id)
    assert (job.status, job.error_code) == ("failed", "worker_lost")
    assert attempt <= max_attempts(settings) + 1


def _store_objects(store: LocalStore, job_id: str) -> None:
    for key in (f"jobs/{job_id}/photo.jpg", video_key(job_id), poster_key(job_id)):
        store.put(key, b"x", "application/octet-stream")


def test_purge_deletes_expired_photos_clips_posters_and_rows(settings, sessions, store, make_job, load_job):
    expired = make_job(status="succeeded", expires_at=ago(60))
    expired_failed = make_job(status="failed", expires_at=ago(1))
    kept = make_job(status="succeeded")
    for job_id in (expired, expired_failed, kept):
        _store_objects(store, job_id)
    with sessions() as session:
        session.add(Submission(visitor_id="visitor-1", ip_hash="h"))
        session.add(Submission(visitor_id="visitor-1", ip_hash="h", created_at=ago(49 * 3600)))
        session.commit()

    assert purge_expired(settings, sessions, store) == {"purged": 2, "errors": 0, "submissions": 1}

    for job_id in (expired, expired_failed):
        assert load_job(job_id) is None
        assert not [k for k in stored(store) if job_id in k]
    assert load_job(kept) is not None
    assert {k for k in stored(store) if kept in k} == {
        f"jobs/{kept}/photo.jpg",
        video_key(kept),
        poster_key(kept),
    }
    with sessions() as session:  # the daily allowance outlives the jobs; rows past two windows go
        assert session.scalar(select(func.count()).select_from(Submission)) == 1


def test_purge_keeps_the_row_when_the_store_is_down_and_finishes_later(
    settings, sessions, store, make_job, load_job
):
    class DownStore(LocalStore):
        def delete(self, key: str) -> None:
            raise StorageUnavailable("connection refused")

    job_id = make_job(status="succeeded", expires_at=ago(60))
    _store_objects(store, job_id)
    assert purge_expired(settings, sessions, DownStore(store.root)) == {
        "purged": 0,
        "errors": 1,
        "submissions": 0,
    }
    assert load_job(job_id) is not None
    assert purge_expired(settings, sessions, store) == {"purged": 1, "errors": 0, "submissions": 0}
    assert load_job(job_id) is None and not [k for k in stored(store) if job_id in k]
