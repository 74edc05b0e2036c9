"""Accepting a job: photo checks, the daily allowance, storage, the row, then (only then) the queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from app import jobs
from app.api.errors import ApiError
from app.core.config import Settings
from app.metrics import Metrics
from app.queue import DEFAULT_QUEUE, enqueue_job
from app.storage import ObjectStore, photo_key
from app.tables import Job, JobStatus, new_job_id, utcnow
from app.uploads import Photo, PhotoRejected, read_photo
from app.visitors import Allowance, Visitor, allowance, record_submission
from models.quality import check_photo

log = logging.getLogger("vivify.submit")


@dataclass(frozen=True)
class CheckedPhoto:
    photo: Photo
    size_bytes: int
    quality: dict[str, Any] | None


def analyse_photo(data: bytes, settings: Settings) -> CheckedPhoto:
    """Validate, normalise and rate an upload (CPU-bound: call from a worker thread)."""
    try:
        photo = read_photo(data, max_pixels=settings.max_pixels, min_side=settings.min_side_px)
    except PhotoRejected as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    report = _json_safe(check_photo(photo.image))
    return CheckedPhoto(photo=photo, size_bytes=len(photo.jpeg), quality=report)


def _json_safe(value: Any) -> Any:
    """The quality report goes into a JSON column and the API: plain types only (numpy scalars out)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def photo_problem(checked: CheckedPhoto, settings: Settings) -> ApiError | None:
    """A reason to refuse the job although the photo itself is fine."""
    faces = (checked.quality or {}).get("faces")
    if settings.animator == "portrait" and faces == 0:
        tips = (checked.quality or {}).get("tips") or []
        tip = tips[0] if tips else "No face was found: use a photo where one face looks toward the camera."
        return ApiError(422, "no_face", f"This animator needs a face. {tip}")
    return None


def _over_quota(left: Allowance) -> ApiError:
    wait = left.retry_after_s()
    return ApiError(
        429,
        "quota_exceeded",
        f"You have used your {left.limit} free animations for today; more in {wait // 3600} h "
        f"{wait % 3600 // 60} min.",
        {"Retry-After": str(wait)},
    )


def check_allowance(session: Session, settings: Settings, visitor: Visitor) -> None:
    left = allowance(session, settings, visitor)
    if left.remaining <= 0:
        raise _over_quota(left)


def create_job(
    *,
    session: Session,
    settings: Settings,
    store: ObjectStore,
    producer: Celery,
    metrics: Metrics,
    visitor: Visitor,
    checked: CheckedPhoto,
    motion: str | None,
    seed: int,
) -> Job:
    """Store the photo, commit the job and its submission, then enqueue. Never loses a committed job:
    if the broker is down the job stays queued and the reconciler sends it later."""
    job_id = new_job_id()
    key = photo_key(job_id)
    store.put(key, checked.photo.jpeg, "image/jpeg")
    now = utcnow()
    job = Job(
        id=job_id,
        visitor_id=visitor.id,
        status=JobStatus.QUEUED.value,
        stage="queued",
        stage_detail="",
        progress=0.0,
        cancel_requested=False,
        motion=motion,
        seed=seed,
        animator=settings.animator,
        model=settings.model,
        queue=DEFAULT_QUEUE,
        photo_key=key,
        photo_width=checked.photo.width,
        photo_height=checked.photo.height,
        photo_bytes=checked.size_bytes,
        quality=checked.quality,
        attempts=0,
        created_at=now,
        expires_at=now + timedelta(hours=settings.retention_hours),
    )
    try:
        session.add(job)
        record_submission(session, visitor)
        session.flush()
        # Count again inside the write transaction: two racing uploads cannot both take the last one.
        if allowance(session, settings, visitor).used > settings.free_animations_per_day:
            raise _over_quota(allowance(session, settings, visitor))
        session.commit()
    except BaseException:
        session.rollback()
        try:
            store.delete(key)  # no row points at it: don't leave an orphan photo behind
        except Exception:
            log.warning("could not remove the photo of an uncommitted job")
        raise
    metrics.jobs_submitted.inc()
    try:
        enqueue_job(job.id, job.queue, celery=producer)
        jobs.mark_enqueued(session, job.id)
    except Exception as exc:
        metrics.enqueue_failures.inc()
        log.warning(
            "job %s committed but not enqueued (%s); the reconciler will send it", job.id, type(exc).__name__
        )
        session.rollback()
    session.refresh(job)
    return job
