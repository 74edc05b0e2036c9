"""Accepting a job: photo checks, the daily allowance, storage, the row, then (only then) the queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import jobs, webhooks
from app.core.config import Settings
from app.core.queue import enqueue_job, priority_for, queue_for
from app.core.schemas import as_utc
from app.core.storage import ObjectStore, photo_key
from app.core.tables import Job, JobStatus, new_job_id, utcnow
from app.core.uploads import Photo, PhotoRejected, read_photo
from app.core.visitors import Allowance, Visitor, allowance, record_submission
from app.web.errors import ApiError
from app.web.forms import UploadForm, clean_motion, parse_seed
from app.web.metrics import Metrics
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


@dataclass(frozen=True)
class StoredPhoto:
    """Another job's photo, already checked and stored: create_job copies it, never decodes it again."""

    key: str
    width: int
    height: int
    size_bytes: int
    quality: dict[str, Any] | None


PHOTO_GONE = "The photo of this job is no longer stored; upload it again to animate it."


def stored_photo_of(job: Job, store: ObjectStore) -> StoredPhoto:
    """The job's photo for another animation, or 409 photo_gone (expired or deleted meanwhile)."""
    if as_utc(job.expires_at) <= utcnow() or not store.exists(job.photo_key):
        raise ApiError(409, "photo_gone", PHOTO_GONE)
    return StoredPhoto(
        key=job.photo_key,
        width=job.photo_width,
        height=job.photo_height,
        size_bytes=job.photo_bytes,
        quality=job.quality,
    )


def _store_photo(store: ObjectStore, key: str, photo: CheckedPhoto | StoredPhoto) -> None:
    if isinstance(photo, CheckedPhoto):
        store.put(key, photo.photo.jpeg, "image/jpeg")
        return
    try:  # a copy, not a shared key: deleting either job never breaks the other
        data = store.get(photo.key)
    except KeyError:
        raise ApiError(409, "photo_gone", PHOTO_GONE) from None
    store.put(key, data, "image/jpeg")


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


def photo_problem(checked: CheckedPhoto, settings: Settings, animator: str | None = None) -> ApiError | None:
    """A reason to refuse the job although the photo itself is fine."""
    faces = (checked.quality or {}).get("faces")
    if (animator or settings.animator) == "portrait" and faces == 0:
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


IDEMPOTENCY_KEY_MAX = 128


class DuplicateSubmit(Exception):
    """A retried submit: the visitor already has a job under this Idempotency-Key."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job


def clean_idempotency_key(raw: str | None) -> str | None:
    """The Idempotency-Key header: 1-128 visible ASCII characters (a UUID is typical)."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not all(33 <= ord(c) < 127 for c in key):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters.",
        )
    return key


def find_idempotent(session: Session, visitor: Visitor, key: str | None) -> Job | None:
    """The visitor's job submitted under this key, if any (keys of other visitors never match)."""
    if key is None:
        return None
    return session.scalar(select(Job).where(Job.visitor_id == visitor.id, Job.idempotency_key == key))


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    events: list[str]


def check_webhook(url: str | None, events: str | None, settings: Settings) -> WebhookRequest | None:
    """The job's webhook, or 422. Resolves the host name (blocking: call from a worker thread)."""
    url = (url or "").strip()
    if not url:
        if (events or "").strip():
            raise ApiError(422, "invalid_webhook", "webhook_events_filter needs a webhook URL.")
        return None
    try:
        chosen = webhooks.parse_events(events)
    except ValueError as exc:
        raise ApiError(422, "invalid_webhook_events", str(exc)) from None
    try:
        webhooks.check_url(url, allow_private=settings.webhooks_allow_private)
    except webhooks.WebhookRefused as exc:
        raise ApiError(422, "invalid_webhook", f"The webhook was refused: {exc}.") from None
    return WebhookRequest(url=url, events=chosen)


def choose_animator(raw: str | None, settings: Settings) -> str:
    """The animator a job asks for (one the service offers), or the default."""
    name = (raw or "").strip()
    offered = settings.offered_animators
    if not name:
        return offered[0]
    if name not in offered:
        raise ApiError(422, "unknown_animator", f"The animator must be one of: {', '.join(offered)}.")
    return name


def check_allowance(session: Session, settings: Settings, visitor: Visitor) -> None:
    left = allowance(session, settings, visitor)
    # End the read transaction now: the photo check that follows is slow, and must not hold a pooled
    # connection meanwhile (under load, uploads would starve every other request of connections).
    session.rollback()
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
    checked: CheckedPhoto | StoredPhoto,
    motion: str | None,
    seed: int,
    animator: str | None = None,
    idempotency_key: str | None = None,
    webhook: WebhookRequest | None = None,
) -> Job:
    """Store the photo (or copy another job's stored one), commit the job and its submission, then
    enqueue. Never loses a committed job: if the broker is down the job stays queued and the reconciler
    sends it later.

    Raises DuplicateSubmit when a concurrent submit with the same Idempotency-Key committed first
    (the unique index decides; this one's photo and allowance are rolled back)."""
    animator = animator or settings.animator
    model = settings.model_for(animator)
    job_id = new_job_id()
    key = photo_key(job_id)
    _store_photo(store, key, checked)
    width, height = (
        (checked.photo.width, checked.photo.height)
        if isinstance(checked, CheckedPhoto)
        else (checked.width, checked.height)
    )
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
        animator=animator,
        model=model,
        queue=queue_for(animator, model),
        priority=priority_for(animator),
        idempotency_key=idempotency_key,
        webhook_url=webhook.url if webhook else None,
        webhook_events=webhook.events if webhook else None,
        photo_key=key,
        photo_width=width,
        photo_height=height,
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
    except IntegrityError:
        session.rollback()
        _remove_photo(store, key)
        existing = find_idempotent(session, visitor, idempotency_key)
        if existing is None:
            raise
        raise DuplicateSubmit(existing) from None
    except BaseException:
        session.rollback()
        _remove_photo(store, key)
        raise
    metrics.jobs_submitted.inc()
    try:
        enqueue_job(job.id, job.queue, celery=producer, priority=job.priority)
        jobs.mark_enqueued(session, job.id)
    except Exception as exc:
        metrics.enqueue_failures.inc()
        log.warning(
            "job %s committed but not enqueued (%s); the reconciler will send it", job.id, type(exc).__name__
        )
        session.rollback()
    session.refresh(job)
    return job


def _remove_photo(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)  # no row points at it: don't leave an orphan photo behind
    except Exception:
        log.warning("could not remove the photo of an uncommitted job")


CONSENT_MESSAGE = "Please confirm you have the right to animate this photo."


@dataclass(frozen=True)
class Accepted:
    """A submission that passed every check, ready for create_job."""

    checked: CheckedPhoto | StoredPhoto
    motion: str | None
    seed: int
    animator: str
    webhook: WebhookRequest | None


async def check_submission(
    form: UploadForm, motion_text: str | None, *, session: Session, settings: Settings, visitor: Visitor
) -> Accepted:
    """Every check of a new job, in order, for the API and the page's no-JavaScript form alike.

    Cheap checks first; the allowance before the photo, so an over-quota visitor costs no decoding.
    Raises ApiError (4xx) on the first refusal.
    """
    if not form.consent:
        raise ApiError(422, "consent_required", CONSENT_MESSAGE)
    motion = clean_motion(motion_text)
    seed = parse_seed(form.seed)
    animator = choose_animator(form.animator, settings)
    webhook = await run_in_threadpool(check_webhook, form.webhook, form.webhook_events_filter, settings)
    await run_in_threadpool(check_allowance, session, settings, visitor)
    checked = await run_in_threadpool(analyse_photo, form.photo, settings)
    problem = photo_problem(checked, settings, animator)
    if problem is not None:
        raise problem
    return Accepted(checked=checked, motion=motion, seed=seed, animator=animator, webhook=webhook)


async def check_again(
    job: Job,
    motion_text: str | None,
    seed_text: str | None,
    *,
    session: Session,
    settings: Settings,
    store: ObjectStore,
    visitor: Visitor,
) -> Accepted:
    """The checks of a new job made from one of the visitor's jobs: its stored photo, another motion.

    Consent was given for this photo at upload; the photo was checked then, and its report carries over.
    The animator stays the job's own while the service still offers it. Raises ApiError (4xx)."""
    motion = clean_motion(motion_text)
    seed = parse_seed(seed_text)
    offered = settings.offered_animators
    animator = job.animator if job.animator in offered else offered[0]
    photo = await run_in_threadpool(stored_photo_of, job, store)
    await run_in_threadpool(check_allowance, session, settings, visitor)
    return Accepted(checked=photo, motion=motion, seed=seed, animator=animator, webhook=None)


@dataclass(frozen=True)
class JobMaker:
    """What creating a job needs, gathered once per request (app.web.deps.JobMakerDep)."""

    session: Session
    settings: Settings
    store: ObjectStore
    producer: Celery
    metrics: Metrics
    visitor: Visitor

    async def create(self, accepted: Accepted, idempotency_key: str | None = None) -> Job:
        """create_job for an accepted submission, in a worker thread (it blocks on storage and database)."""
        return await run_in_threadpool(
            lambda: create_job(
                session=self.session,
                settings=self.settings,
                store=self.store,
                producer=self.producer,
                metrics=self.metrics,
                visitor=self.visitor,
                checked=accepted.checked,
                motion=accepted.motion,
                seed=accepted.seed,
                animator=accepted.animator,
                idempotency_key=idempotency_key,
                webhook=accepted.webhook,
            )
        )
