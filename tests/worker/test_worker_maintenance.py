"""The reconciler and the retention purge against a real SQLite database and local store."""

from __future__ import annotations

import base64
import json
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
    assert counts == {"requeued": 3, "failed": 1, "announced": 0}
    failed = load_job(hopeless)
    assert (failed.status, failed.error_code) == ("failed", "worker_lost")
    assert "stopped responding" in failed.error_message
    # Back in line, so the message sent again may claim it (a live run would keep its heartbeat fresh).
    requeued = load_job(dead_worker)
    assert (requeued.status, requeued.stage, requeued.progress) == ("queued", "queued", 0.0)
    for untouched in (healthy_running, fresh_queued, done):
        assert untouched not in {j for j, _ in sent}
    assert load_job(done).status == "succeeded"

    # Re-sent jobs are marked: the next run does not send them again (no message storm).
    again: list[tuple[str, str]] = []
    assert reconcile(settings, sessions, lambda j, q: again.append((j, q))) == {
        "requeued": 0,
        "failed": 0,
        "announced": 0,
    }
    assert again == []


def test_no_job_stays_running_forever(settings, sessions, make_job, load_job):
    """A job whose worker dies on every attempt ends failed after max_attempts re-sends."""
    job_id = make_job(status="running", attempts=1, heartbeat_at=ago(10_000))
    for attempt in range(1, max_attempts(settings) + 2):  # noqa: B007 (checked after the loop)
        reconcile(settings, sessions, lambda j, q: None)
        with sessions() as session:  # the re-sent task is claimed, then its worker dies again
            job = session.get(Job, job_id)
            if job.status != "queued":
                break
            job.status = "running"
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

    assert purge_expired(settings, sessions, store) == {"purged": 2, "errors": 0, "submissions": 1, "rigs": 0}

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

        def delete_under(self, prefix: str, older_than=None) -> int:
            raise StorageUnavailable("connection refused")

    job_id = make_job(status="succeeded", expires_at=ago(60))
    _store_objects(store, job_id)
    assert purge_expired(settings, sessions, DownStore(store.root)) == {
        "purged": 0,
        "errors": 2,  # the job's objects, and the kept rigs' sweep
        "submissions": 0,
        "rigs": 0,
    }
    assert load_job(job_id) is not None
    done = purge_expired(settings, sessions, store)
    assert done == {"purged": 1, "errors": 0, "submissions": 0, "rigs": 0}
    assert load_job(job_id) is None and not [k for k in stored(store) if job_id in k]


def test_a_lost_completed_webhook_is_sent_again_once_under_its_one_id(
    settings, sessions, make_job, load_job
) -> None:
    """The broker was down as the job ended (or its worker died right after the commit): the reconciler
    hands the `completed` event to the broker, under the id the worker would have used, and only once."""
    from app.core.queue import make_producer
    from app.core.webhooks import event_id
    from tests.app.api_helpers import broker_messages

    hook = {"webhook_url": "https://hooks.example/h"}
    lost = make_job(status="succeeded", finished_at=ago(60), **hook)
    just_ended = make_job(status="succeeded", finished_at=ago(1), **hook)  # its worker is sending it now
    unwanted = make_job(status="failed", finished_at=ago(60), webhook_events=["start"], **hook)
    announced = make_job(status="succeeded", finished_at=ago(60), completed_event_at=ago(59), **hook)
    no_hook = make_job(status="succeeded", finished_at=ago(60))
    running = make_job(status="running", heartbeat_at=ago(1), attempts=1, **hook)

    def sent() -> list[tuple[str, str, str]]:
        out = []
        for path in broker_messages(settings):
            message = json.loads(path.read_text())
            if message["headers"]["task"] == "vivify.webhook":
                _url, event, payload, msg_id = json.loads(base64.b64decode(message["body"]))[0]
                out.append((payload["id"], event, msg_id))
        return out

    producer = make_producer(settings)
    counts = reconcile(settings, sessions, lambda j, q: None, celery=producer)
    assert counts["announced"] == 2  # lost, and unwanted (recorded, nothing to send)
    key = settings.webhook_signing_key
    assert sent() == [(lost, "completed", event_id(key, lost, "completed"))]
    assert load_job(lost).completed_event_at is not None and load_job(unwanted).completed_event_at is not None
    for untouched in (just_ended, no_hook, running):
        assert load_job(untouched).completed_event_at is None
    assert load_job(announced).completed_event_at is not None
    assert reconcile(settings, sessions, lambda j, q: None, celery=producer)["announced"] == 0
    assert len(sent()) == 1  # not twice
