"""Job records: creation and the forward-only status machine (where a job stands in its queue: waits.py).

Every transition is one conditional UPDATE (`... WHERE status IN (allowed)`), so two processes racing
on the same job (a redelivered task, a cancel, the reconciler) can never move a status backwards.

A run is fenced by its attempt number: each claim increments `attempts`, and a worker's writes
(progress, success, failure, cancel) name the attempt they belong to. A run that another claim has
superseded (its worker looked dead, the job was re-sent) can no longer write, and stops at its next
progress report instead of finishing a second time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from app.core.db import rows_changed
from app.core.kept_rigs import photo_digest, rigs_prefix
from app.core.storage import ObjectStore, gif_key, photo_key, poster_key, video_key
from app.core.tables import FINAL_STATUSES, Job, JobStatus, utcnow

_Q, _R = JobStatus.QUEUED, JobStatus.RUNNING


def get_job(session: Session, job_id: str, visitor_id: str | None = None) -> Job | None:
    """A job by id; with `visitor_id`, only if it belongs to that visitor."""
    job = session.get(Job, job_id)
    if job is None or (visitor_id is not None and job.visitor_id != visitor_id):
        return None
    return job


def _transition(
    session: Session,
    job_id: str,
    allowed: list[JobStatus],
    *conditions: ColumnElement[bool],
    attempt: int | None = None,
    **values: Any,
) -> bool:
    """One conditional UPDATE; `attempt`: only while that claim still holds the job (the fence)."""
    fence = [Job.attempts == attempt] if attempt is not None else []
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(allowed), *conditions, *fence).values(**values)
    )
    session.commit()
    return rows_changed(result) == 1


def _touched() -> ColumnElement[Any]:
    """When anything last showed the job alive: its worker's heartbeat, else its (re-)sending."""
    return func.coalesce(Job.heartbeat_at, Job.enqueued_at, Job.created_at)


def mark_enqueued(session: Session, job_id: str) -> None:
    _transition(session, job_id, [_Q], enqueued_at=utcnow())


def claim(session: Session, job_id: str, worker: str, take_over_after_s: float | None = None) -> Job | None:
    """Start a queued job; its `attempts` is then this run's fence. None when it is final, unknown or
    running: skip it.

    A running job is taken again by the same `worker` (a retry: one process runs one task at a time,
    so its earlier run has ended), and taken over by another only when nothing has touched it for
    `take_over_after_s` (its worker died and the broker redelivered the message before the reconciler
    re-queued it). A younger one has a live run: a second would render the same clip twice, at once."""
    now = utcnow()
    runnable: ColumnElement[bool] = or_(Job.status == _Q, and_(Job.status == _R, Job.worker == worker))
    if take_over_after_s is not None:
        stale = and_(Job.status == _R, _touched() < now - timedelta(seconds=take_over_after_s))
        runnable = or_(runnable, stale)
    ok = _transition(
        session,
        job_id,
        [_Q, _R],
        runnable,
        status=_R,
        worker=worker,
        attempts=Job.attempts + 1,
        started_at=func.coalesce(Job.started_at, now),
        heartbeat_at=now,
        stage="analyzing",
        stage_detail="",
        progress=0.0,
    )
    if not ok:
        return None
    job = session.get(Job, job_id)
    session.refresh(job)
    return job


def release(session: Session, job_id: str, attempt: int) -> bool:
    """Put a running job back in line (its retry may then run on any worker); only by its own run."""
    return _transition(
        session, job_id, [_R], attempt=attempt, status=_Q, stage="queued", stage_detail="", progress=0.0
    )


def report_progress(
    session: Session, job_id: str, stage: str, progress: float, detail: str = "", attempt: int | None = None
) -> bool:
    """Write progress; returns True when the caller should stop: cancel asked, or the job is no longer
    this run's (deleted, failed or re-queued by the reconciler, taken over by another claim)."""
    still_running = _transition(
        session,
        job_id,
        [_R],
        attempt=attempt,
        stage=stage,
        stage_detail=detail[:64],
        progress=max(0.0, min(1.0, progress)),
        heartbeat_at=utcnow(),
    )
    if not still_running:
        return True
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def succeed(
    session: Session,
    job_id: str,
    *,
    video_key: str,
    poster_key: str,
    video_info: dict[str, Any],
    stage_seconds: dict[str, float],
    clip_check: dict[str, Any] | None = None,
    attempt: int | None = None,
) -> bool:
    finished = utcnow()
    started = session.scalar(select(Job.started_at).where(Job.id == job_id))
    if started is not None and started.tzinfo is None:  # SQLite hands back naive UTC
        started = started.replace(tzinfo=timezone.utc)
    return _transition(
        session,
        job_id,
        [_R],
        attempt=attempt,
        status=JobStatus.SUCCEEDED,
        stage="done",
        stage_detail="",
        progress=1.0,
        video_key=video_key,
        poster_key=poster_key,
        video_info=video_info,
        stage_seconds=stage_seconds,
        clip_check=clip_check,
        finished_at=finished,
        run_s=None if started is None else max(0.0, (finished - started).total_seconds()),
    )


def fail(
    session: Session,
    job_id: str,
    code: str,
    message: str,
    attempt: int | None = None,
    clip_check: dict[str, Any] | None = None,
) -> bool:
    """`clip_check`: the figures of a clip that failed the check (error clip_check_failed)."""
    return _transition(
        session,
        job_id,
        [_Q, _R],
        attempt=attempt,
        status=JobStatus.FAILED,
        error_code=code,
        error_message=message[:2000],
        clip_check=clip_check,
        finished_at=utcnow(),
    )


def mark_canceled(session: Session, job_id: str, attempt: int | None = None) -> bool:
    return _transition(
        session,
        job_id,
        [_Q, _R],
        attempt=attempt,
        status=JobStatus.CANCELED,
        stage="canceled",
        finished_at=utcnow(),
    )


def request_stop(session: Session, job_id: str) -> bool:
    """Ask a running job's run to stop: a flag its progress reports read between steps (it then ends the
    job as canceled: app.core.endings). False if the job is not running."""
    return _transition(session, job_id, [_R], cancel_requested=True)


def stale_jobs(session: Session, older_than_s: int) -> list[Job]:
    """Queued or running jobs nothing has touched for a while (lost message, dead worker)."""
    cutoff: datetime = utcnow() - timedelta(seconds=older_than_s)
    return list(session.scalars(select(Job).where(Job.status.in_([_Q, _R]), _touched() < cutoff)))


def touch_stale(session: Session, job_id: str, older_than_s: int) -> bool:
    """Mark a stale queued/running job as re-sent now; False if it moved or another reconciler won.

    Only the caller that gets True sends the job id again, so two reconcilers never double-send. A
    running one goes back in line (queued), so the message sent again may claim it, and its old run, if
    it was only slow, stops at its next progress report.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    now = utcnow()
    was_running = Job.status == _R
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_([_Q, _R]), _touched() < cutoff)
        .values(
            enqueued_at=now,
            heartbeat_at=case((was_running, now), else_=Job.heartbeat_at),
            stage=case((was_running, "queued"), else_=Job.stage),
            stage_detail=case((was_running, ""), else_=Job.stage_detail),
            progress=case((was_running, 0.0), else_=Job.progress),
            status=_Q,
        )
    )
    session.commit()
    return rows_changed(result) == 1


def mark_completed_event(session: Session, job_id: str) -> None:
    """The job's `completed` webhook is with the broker (or not wanted): nothing to re-announce."""
    session.execute(update(Job).where(Job.id == job_id).values(completed_event_at=utcnow()))
    session.commit()


def unannounced_jobs(session: Session, older_than_s: float, limit: int = 500) -> list[Job]:
    """Final jobs with a webhook whose `completed` event was never handed to the broker."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    query = select(Job).where(
        Job.status.in_(FINAL_STATUSES),
        Job.webhook_url.is_not(None),
        Job.completed_event_at.is_(None),
        Job.finished_at < cutoff,
    )
    return list(session.scalars(query.order_by(Job.finished_at).limit(limit)))


def expired_jobs(session: Session, now: datetime | None = None) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.expires_at < (now or utcnow()))))


def delete_job(session: Session, store: ObjectStore, job: Job) -> None:
    """Delete a job's photo, the rigs kept for it, its clip, poster and row now (a visitor's DELETE, or
    retention)."""
    # Stop a live job first, so a worker that finishes after this finds no job to succeed.
    mark_canceled(session, job.id)
    if job.photo_key:  # rigs are kept by the photo's content (app.core.kept_rigs): read it to find them
        try:
            photo = store.get(job.photo_key)
        except KeyError:
            photo = None
        if photo is not None:
            store.delete_under(rigs_prefix(photo_digest(photo)))
    # Deterministic keys: also removes a clip a worker stored but had not yet recorded.
    keys = {
        job.photo_key,
        job.video_key,
        job.poster_key,
        photo_key(job.id),
        video_key(job.id),
        poster_key(job.id),
        gif_key(job.id),
    }
    for key in sorted(k for k in keys if k):
        store.delete(key)  # StorageUnavailable propagates and the row stays, so a retry finishes the job
    row = session.get(Job, job.id)
    if row is not None:
        session.delete(row)
    session.commit()
