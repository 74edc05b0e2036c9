"""Creating a job: every check in order, the allowance and Idempotency-Key, then storage, the row and
only then the queue."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from anyio import to_thread
from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.config import Settings
from app.core.errors import ErrorCode, Invalid, Throttled
from app.core.face_pool import face_pools
from app.core.queue import enqueue_job, priority_for, queue_for
from app.core.service.faces import KEEPS_FACES_STILL, choose_faces, parse_faces
from app.core.service.fields import (
    WebhookRequest,
    check_recording_fits,
    check_resolution,
    check_webhook,
    choose_animator,
    clean_curves,
    clean_motion,
    parse_duration,
    parse_resolution,
    parse_seed,
)
from app.core.service.photos import (
    CheckedPhoto,
    StoredPhoto,
    analyse_upload,
    photo_problem,
    remove_photo,
    store_photo,
    stored_photo_of,
)
from app.core.service.plans import plan_json, plan_stored, recorded_plan_json
from app.core.storage import ObjectStore, photo_key
from app.core.tables import Job, JobStatus, new_job_id, utcnow
from app.core.visitors import Allowance, Visitor, allowance, record_submission
from models.clip_shape import CLIP_DEFAULT_S, HD
from models.motion_curves import RECORDED

log = logging.getLogger("vivify.service")

CONSENT_MESSAGE = "Please confirm you have the right to animate this photo."


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class JobCounters(Protocol):
    """The counters creating a job moves (app.web.metrics.Metrics has them)."""

    @property
    def jobs_submitted(self) -> _Counter: ...

    @property
    def enqueue_failures(self) -> _Counter: ...


def _over_quota(left: Allowance) -> Throttled:
    wait = left.retry_after_s()
    return Throttled(
        ErrorCode.QUOTA_EXCEEDED,
        f"You have used your {left.limit} free animations for today; more in {wait // 3600} h "
        f"{wait % 3600 // 60} min.",
        retry_after_s=wait,
    )


def check_allowance(session: Session, settings: Settings, visitor: Visitor) -> None:
    left = allowance(session, settings, visitor)
    # End the read transaction now: the photo check that follows is slow, and must not hold a pooled
    # connection meanwhile (under load, uploads would starve every other request of connections).
    session.rollback()
    if left.remaining <= 0:
        raise _over_quota(left)


class DuplicateSubmit(Exception):
    """A retried submit: the visitor already has a job under this Idempotency-Key."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job


IDEMPOTENCY_MISMATCH_MESSAGE = (
    "This Idempotency-Key was already used with another photo or other fields; use a new key for a new job."
)


def request_fingerprint(request: JobRequest) -> str:
    """A hash of what a submit asks for: the photo's bytes and every field that shapes the job, as
    sent (so a retry that leaves the seed out matches its first try, whose seed was drawn at random).
    Consent is not in it: a job exists only once it was given."""
    fields = {
        "photo": hashlib.sha256(request.photo).hexdigest(),
        "motion": request.motion,
        "seed": request.seed,
        "animator": request.animator,
        "webhook": request.webhook,
        "webhook_events": request.webhook_events,
    }
    # Only when sent: fingerprints of other submits stay as they were.
    for name in ("motion_curves", "duration_s", "resolution", "faces"):
        if getattr(request, name) is not None:
            fields[name] = getattr(request, name)
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def check_replay(job: Job, fingerprint: str | None) -> Job:
    """The job a retried submit gets back, or Invalid idempotency_key_reused when the key's first
    submit asked for something else. A job stored without a fingerprint (from before fingerprints)
    is answered as a replay: there is nothing to compare."""
    stored = job.request_fingerprint
    if fingerprint is not None and stored is not None and stored != fingerprint:
        raise Invalid(ErrorCode.IDEMPOTENCY_MISMATCH, IDEMPOTENCY_MISMATCH_MESSAGE)
    return job


def find_idempotent(session: Session, visitor: Visitor, key: str | None) -> Job | None:
    """The visitor's job submitted under this key, if any (keys of other visitors never match)."""
    if key is None:
        return None
    return session.scalar(select(Job).where(Job.visitor_id == visitor.id, Job.idempotency_key == key))


def create_job(
    *,
    session: Session,
    settings: Settings,
    store: ObjectStore,
    producer: Celery,
    metrics: JobCounters,
    visitor: Visitor,
    checked: CheckedPhoto | StoredPhoto,
    motion: str | None,
    seed: int,
    animator: str | None = None,
    idempotency_key: str | None = None,
    webhook: WebhookRequest | None = None,
    motion_plan: dict[str, Any] | None = None,
    request_fingerprint: str | None = None,
    motion_curves: dict[str, Any] | None = None,
    duration_s: float = CLIP_DEFAULT_S,
    resolution: str = HD,
    faces: list[dict[str, Any]] | None = None,
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
    store_photo(store, key, checked)
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
        motion_plan=motion_plan,
        motion_curves=motion_curves,
        duration_s=duration_s,
        resolution=resolution,
        seed=seed,
        animator=animator,
        model=model,
        queue=queue_for(animator, model),
        priority=priority_for(animator),
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint if idempotency_key is not None else None,
        webhook_url=webhook.url if webhook else None,
        webhook_events=webhook.events if webhook else None,
        photo_key=key,
        photo_width=width,
        photo_height=height,
        photo_bytes=checked.size_bytes,
        quality=checked.quality,
        faces=faces,
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
        remove_photo(store, key)
        existing = find_idempotent(session, visitor, idempotency_key)
        if existing is None:
            raise
        raise DuplicateSubmit(existing) from None
    except BaseException:
        session.rollback()
        remove_photo(store, key)
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


@dataclass(frozen=True)
class JobRequest:
    """What a new job asks for, as read from the form (the web tier parses; this checks)."""

    photo: bytes
    consent: bool
    motion: str | None = None
    seed: str | None = None
    animator: str | None = None
    webhook: str | None = None
    webhook_events: str | None = None  # "start,progress,completed"
    motion_curves: str | None = None  # recorded curves, the JSON text as sent (models.motion_curves)
    duration_s: str | None = None  # the clip's length in seconds, 3-10 (blank: 4, or the recording's)
    resolution: str | None = None  # hd or 4k (blank: hd)
    faces: str | None = None  # the faces to move, "0,2" (blank: every movable face)


@dataclass(frozen=True)
class Accepted:
    """A request that passed every check, ready for create_job."""

    checked: CheckedPhoto | StoredPhoto
    motion: str
    seed: int
    animator: str
    webhook: WebhookRequest | None
    plan: dict[str, Any] | None = None  # the motion planned from the photo; None if planning failed
    curves: dict[str, Any] | None = None  # recorded curves (RecordedMotion.to_json), then motion "recorded"
    duration_s: float = CLIP_DEFAULT_S
    resolution: str = HD
    faces: list[dict[str, Any]] | None = None  # the faces to move (app.core.service.faces); None: all


async def check_request(
    request: JobRequest, *, session: Session, settings: Settings, visitor: Visitor
) -> Accepted:
    """Every check of a new job, in order. Cheap checks first; the allowance before the photo, so an
    over-quota visitor costs no decoding. Raises the first refusal."""
    if not request.consent:
        raise Invalid(ErrorCode.CONSENT_REQUIRED, CONSENT_MESSAGE)
    curves = clean_curves(request.motion_curves, request.motion)
    motion = RECORDED if curves is not None else clean_motion(request.motion)
    seed = parse_seed(request.seed)
    duration_s = check_recording_fits(curves, parse_duration(request.duration_s)) or CLIP_DEFAULT_S
    resolution = parse_resolution(request.resolution)
    asked_faces = parse_faces(request.faces)
    animator = choose_animator(request.animator, settings)
    webhook = await to_thread.run_sync(check_webhook, request.webhook, request.webhook_events, settings)
    await to_thread.run_sync(check_allowance, session, settings, visitor)
    checked = await analyse_upload(request.photo, settings)  # waits for the decode budget off-thread
    problem = photo_problem(checked, settings, animator)
    if problem is not None:
        raise problem
    check_resolution(resolution, (checked.photo.width, checked.photo.height))
    faces = choose_faces(asked_faces, checked.faces, animator)
    if curves is not None:  # the recording is the motion: its plan is written from the curves
        plan = recorded_plan_json(curves)
    else:
        plan = await face_pools(settings).analyse(plan_json, checked.photo.image, motion, seed, duration_s)
    return Accepted(
        checked=checked,
        motion=motion,
        seed=seed,
        animator=animator,
        webhook=webhook,
        plan=plan,
        curves=curves.to_json() if curves is not None else None,
        duration_s=duration_s,
        resolution=resolution,
        faces=faces,
    )


async def check_again(
    job: Job,
    motion_text: str | None,
    seed_text: str | None,
    duration_text: str | None = None,
    resolution_text: str | None = None,
    *,
    session: Session,
    settings: Settings,
    store: ObjectStore,
    visitor: Visitor,
) -> Accepted:
    """The checks of a new job made from one of the visitor's jobs: its stored photo, another motion.

    Consent was given for this photo at upload; the photo was checked then, and its report carries over.
    The animator stays the job's own while the service still offers it, and so do the clip's length and
    size unless others are sent, and the faces it moves."""
    motion = clean_motion(motion_text)
    seed = parse_seed(seed_text)
    duration_s = parse_duration(duration_text) or job.duration_s
    resolution = parse_resolution(resolution_text or job.resolution)
    offered = settings.offered_animators
    animator = job.animator if job.animator in offered else offered[0]
    photo = await to_thread.run_sync(stored_photo_of, job, store)
    check_resolution(resolution, (photo.width, photo.height))
    await to_thread.run_sync(check_allowance, session, settings, visitor)
    plan = await face_pools(settings).analyse(plan_stored, store, photo.key, motion, seed, duration_s)
    return Accepted(
        checked=photo,
        motion=motion,
        seed=seed,
        animator=animator,
        webhook=None,
        plan=plan,
        duration_s=duration_s,
        resolution=resolution,
        faces=job.faces if animator in KEEPS_FACES_STILL else None,
    )
