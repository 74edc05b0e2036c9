"""Periodic tasks run by Celery beat: reconcile jobs no worker holds, and purge expired jobs.

The reconciler is the backstop for every way a job id can go missing: the enqueue after the commit
failed, the broker lost its data, a worker died holding the message. Nothing stays queued or running
forever: a stale job is sent again (a duplicate message is harmless, the task skips final jobs and
jobs another worker is running, and writes deterministic keys), and after too many attempts it fails
with `worker_lost`. It also re-sends a final job's `completed` webhook that never reached the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy import delete

from app.core import jobs
from app.core.config import Settings, get_settings
from app.core.db import rows_changed
from app.core.endings import JobEnding
from app.core.errors import ErrorCode
from app.core.queue import TaskName
from app.core.storage import ObjectStore, get_store
from app.core.tables import JobStatus, Submission, utcnow
from app.core.visitors import ALLOWANCE_WINDOW
from worker import metrics
from worker.celery_app import app
from worker.tasks import Sessions, default_sessions

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str], None]


def max_attempts(settings: Settings) -> int:
    return settings.task_max_retries + 1


def _send(job_id: str, queue: str) -> None:
    app.send_task(TaskName.ANIMATE.value, args=[job_id], queue=queue)


# A job's own worker sends `completed` right after the commit; the reconciler waits this long first.
COMPLETED_EVENT_GRACE_S = 10.0


def reconcile(
    settings: Settings, sessions: Sessions, enqueue: Enqueue = _send, celery: Celery | None = None
) -> dict[str, int]:
    """Re-send or fail queued/running jobs nothing has touched for `stale_job_after_s`, and re-send
    `completed` webhooks that were never enqueued."""
    counts = {"requeued": 0, "failed": 0, "announced": 0}
    ending = JobEnding(settings, celery=celery or app, count=metrics.record_job)
    with sessions() as session:
        stale = [
            (j.id, j.status, j.attempts, j.queue)
            for j in jobs.stale_jobs(session, settings.stale_job_after_s)
        ]
        for job_id, status, attempts, queue in stale:
            if status == JobStatus.RUNNING and attempts >= max_attempts(settings):
                lost = f"The worker running this job stopped responding ({attempts} tries); please try again."
                if ending.failed(session, job_id, ErrorCode.WORKER_LOST.value, lost) == "failed":
                    counts["failed"] += 1
                continue
            if jobs.touch_stale(session, job_id, settings.stale_job_after_s):
                enqueue(job_id, queue)
                counts["requeued"] += 1
        for job in jobs.unannounced_jobs(session, COMPLETED_EVENT_GRACE_S):
            ending.announce(session, job.id)
            session.refresh(job)
            counts["announced"] += job.completed_event_at is not None
    if any(counts.values()):
        log.warning("reconciled stale jobs: %s", counts)
    return counts


def purge_expired(
    settings: Settings, sessions: Sessions, store: ObjectStore, now: datetime | None = None
) -> dict[str, int]:
    """Delete the photo, clip, poster and row of every job past its expiry (the retention period), the
    rigs kept longer than the retention period, and the allowance's submission rows once they no longer
    count (after two allowance windows)."""
    now = now or utcnow()
    counts = {"purged": 0, "errors": 0, "submissions": 0, "rigs": 0}
    with sessions() as session:
        for job in jobs.expired_jobs(session, now):
            try:
                jobs.delete_job(session, store, job)
            except Exception:  # store briefly down: keep the row so the next run tries again
                session.rollback()
                log.warning("could not delete objects of expired job %s", job.id, exc_info=True)
                counts["errors"] += 1
                continue
            counts["purged"] += 1
        try:  # rigs kept for photos checked but never animated go with the retention period too
            counts["rigs"] = store.delete_under(
                "rigs/", older_than=now - timedelta(hours=settings.retention_hours)
            )
        except Exception:
            log.warning("could not delete expired rigs", exc_info=True)
            counts["errors"] += 1
        cutoff = now - 2 * ALLOWANCE_WINDOW
        counts["submissions"] = rows_changed(
            session.execute(delete(Submission).where(Submission.created_at < cutoff))
        )
        session.commit()
    if any(counts.values()):
        log.info("purged expired jobs: %s", counts)
    return counts


@app.task(name=TaskName.RECONCILE.value, ignore_result=True)
def reconcile_task() -> dict[str, int]:
    settings = get_settings()
    return reconcile(settings, default_sessions(settings))


@app.task(name=TaskName.PURGE_EXPIRED.value, ignore_result=True)
def purge_expired_task() -> dict[str, int]:
    settings = get_settings()
    return purge_expired(settings, default_sessions(settings), get_store())
