"""The job service: everything a visitor can do with jobs, for the JSON API and the pages alike.

Create (every check, then storage, the row and only then the queue), animate again, cancel, delete,
the owner's lookup and the listings. Refusals are domain errors (app.core.errors); the web tier decides
how they are answered. Nothing here knows about HTTP, so the rules cannot drift between the API and
the no-JavaScript pages.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol

from anyio import to_thread
from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import jobs, webhooks
from app.core.config import Settings
from app.core.errors import (
    Conflict,
    ErrorCode,
    Invalid,
    NotFound,
    Refused,
    Throttled,
)
from app.core.queue import enqueue_job, enqueue_webhook, priority_for, queue_for
from app.core.schemas import QuotaOut, as_utc, job_out
from app.core.storage import ObjectStore, photo_key, poster_key, video_key
from app.core.tables import Job, JobStatus, new_job_id, utcnow
from app.core.uploads import Photo, read_photo
from app.core.visitors import Allowance, Visitor, allowance, record_submission
from models.motion import MotionError, parse_motion
from models.quality import check_photo as quality_report

log = logging.getLogger("vivify.service")

JOB_ID_MAX = 64
LIST_LIMIT = 50
IDEMPOTENCY_KEY_MAX = 128
MAX_SEED = 2**31 - 1
MAX_MOTION_CHARS = 200
CONSENT_MESSAGE = "Please confirm you have the right to animate this photo."
PHOTO_GONE = "The photo of this job is no longer stored; upload it again to animate it."


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class JobCounters(Protocol):
    """The counters creating a job moves (app.web.metrics.Metrics has them)."""

    @property
    def jobs_submitted(self) -> _Counter: ...

    @property
    def enqueue_failures(self) -> _Counter: ...


# --- The fields of a new job ---------------------------------------------------------------------------


def parse_seed(raw: str | None) -> int:
    """A seed from 0 to 2³¹-1; a random one when the field is missing or blank."""
    text = (raw or "").strip()
    if not text:
        return secrets.randbelow(MAX_SEED + 1)
    if not re.fullmatch(r"\d{1,10}", text) or int(text) > MAX_SEED:
        raise Invalid(ErrorCode.INVALID_SEED, f"The seed must be a whole number from 0 to {MAX_SEED}.")
    return int(text)


def clean_motion(raw: str | None) -> str | None:
    """Motion text checked by the animators' own parser, so an unknown word is refused now, not a
    failed job later. None means the default motion."""
    text = " ".join((raw or "").split())  # newlines and tabs from a textarea become spaces
    if not text:
        return None
    if len(text) > MAX_MOTION_CHARS:
        raise Invalid(
            ErrorCode.INVALID_MOTION, f"The motion text is limited to {MAX_MOTION_CHARS} characters."
        )
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise Invalid(ErrorCode.INVALID_MOTION, "The motion text contains control characters.")
    try:
        parse_motion(text)
    except MotionError as exc:
        raise Invalid(ErrorCode.UNKNOWN_MOTION, str(exc)) from None
    return text


def clean_idempotency_key(raw: str | None) -> str | None:
    """The Idempotency-Key header: 1-128 visible ASCII characters (a UUID is typical)."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not all(33 <= ord(c) < 127 for c in key):
        raise Invalid(
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters.",
        )
    return key


def choose_animator(raw: str | None, settings: Settings) -> str:
    """The animator a job asks for (one the service offers), or the default."""
    name = (raw or "").strip()
    offered = settings.offered_animators
    if not name:
        return offered[0]
    if name not in offered:
        raise Invalid(ErrorCode.UNKNOWN_ANIMATOR, f"The animator must be one of: {', '.join(offered)}.")
    return name


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    events: list[str]


def check_webhook(url: str | None, events: str | None, settings: Settings) -> WebhookRequest | None:
    """The job's webhook, or Invalid. Resolves the host name (blocking: call from a worker thread)."""
    url = (url or "").strip()
    if not url:
        if (events or "").strip():
            raise Invalid(ErrorCode.INVALID_WEBHOOK, "webhook_events_filter needs a webhook URL.")
        return None
    try:
        chosen = webhooks.parse_events(events)
    except ValueError as exc:
        raise Invalid(ErrorCode.INVALID_WEBHOOK_EVENTS, str(exc)) from None
    try:
        webhooks.check_url(url, allow_private=settings.webhooks_allow_private)
    except webhooks.WebhookRefused as exc:
        raise Invalid(ErrorCode.INVALID_WEBHOOK, f"The webhook was refused: {exc}.") from None
    return WebhookRequest(url=url, events=chosen)


# --- The photo -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedPhoto:
    photo: Photo
    size_bytes: int
    quality: dict[str, Any] | None


def analyse_photo(data: bytes, settings: Settings) -> CheckedPhoto:
    """Validate, normalise and rate an upload (CPU-bound: call from a worker thread)."""
    photo = read_photo(data, max_pixels=settings.max_pixels, min_side=settings.min_side_px)
    report = _json_safe(quality_report(photo.image))
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


def photo_problem(checked: CheckedPhoto, settings: Settings, animator: str | None = None) -> Refused | None:
    """A reason to refuse the job although the photo itself is fine."""
    faces = (checked.quality or {}).get("faces")
    if (animator or settings.animator) == "portrait" and faces == 0:
        tips = (checked.quality or {}).get("tips") or []
        tip = tips[0] if tips else "No face was found: use a photo where one face looks toward the camera."
        return Invalid(ErrorCode.NO_FACE, f"This animator needs a face. {tip}")
    return None


async def check_photo(data: bytes, settings: Settings) -> tuple[CheckedPhoto, Refused | None]:
    """The pre-submit check: the photo's report and what would refuse a job made from it, if anything.
    Raises when the photo itself is refused."""
    checked = await to_thread.run_sync(analyse_photo, data, settings)
    return checked, photo_problem(checked, settings)


@dataclass(frozen=True)
class StoredPhoto:
    """Another job's photo, already checked and stored: create_job copies it, never decodes it again."""

    key: str
    width: int
    height: int
    size_bytes: int
    quality: dict[str, Any] | None


def stored_photo_of(job: Job, store: ObjectStore) -> StoredPhoto:
    """The job's photo for another animation, or Conflict photo_gone (expired or deleted meanwhile)."""
    key = job.photo_key
    if key is None or as_utc(job.expires_at) <= utcnow() or not store.exists(key):
        raise Conflict(ErrorCode.PHOTO_GONE, PHOTO_GONE)
    return StoredPhoto(
        key=key,
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
        raise Conflict(ErrorCode.PHOTO_GONE, PHOTO_GONE) from None
    store.put(key, data, "image/jpeg")


def _remove_photo(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)  # no row points at it: don't leave an orphan photo behind
    except Exception:
        log.warning("could not remove the photo of an uncommitted job")


# --- The allowance and idempotency ---------------------------------------------------------------------


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


def find_idempotent(session: Session, visitor: Visitor, key: str | None) -> Job | None:
    """The visitor's job submitted under this key, if any (keys of other visitors never match)."""
    if key is None:
        return None
    return session.scalar(select(Job).where(Job.visitor_id == visitor.id, Job.idempotency_key == key))


# --- Creating a job ------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Accepted:
    """A request that passed every check, ready for create_job."""

    checked: CheckedPhoto | StoredPhoto
    motion: str | None
    seed: int
    animator: str
    webhook: WebhookRequest | None


async def check_request(
    request: JobRequest, *, session: Session, settings: Settings, visitor: Visitor
) -> Accepted:
    """Every check of a new job, in order. Cheap checks first; the allowance before the photo, so an
    over-quota visitor costs no decoding. Raises the first refusal."""
    if not request.consent:
        raise Invalid(ErrorCode.CONSENT_REQUIRED, CONSENT_MESSAGE)
    motion = clean_motion(request.motion)
    seed = parse_seed(request.seed)
    animator = choose_animator(request.animator, settings)
    webhook = await to_thread.run_sync(check_webhook, request.webhook, request.webhook_events, settings)
    await to_thread.run_sync(check_allowance, session, settings, visitor)
    checked = await to_thread.run_sync(analyse_photo, request.photo, settings)
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
    The animator stays the job's own while the service still offers it."""
    motion = clean_motion(motion_text)
    seed = parse_seed(seed_text)
    offered = settings.offered_animators
    animator = job.animator if job.animator in offered else offered[0]
    photo = await to_thread.run_sync(stored_photo_of, job, store)
    await to_thread.run_sync(check_allowance, session, settings, visitor)
    return Accepted(checked=photo, motion=motion, seed=seed, animator=animator, webhook=None)


# --- The service ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    job: Job
    replayed: bool  # a retried submit (same Idempotency-Key): the job the first one created


@dataclass(frozen=True)
class JobService:
    """One visitor's view of the jobs, with what one request brought (a session, the store, a producer).

    Blocking methods are plain functions (call them from a worker thread); the async ones move their
    blocking parts to threads themselves."""

    session: Session
    settings: Settings
    store: ObjectStore
    producer: Celery
    metrics: JobCounters
    visitor: Visitor

    # Reading.

    def owned(self, job_id: str) -> Job:
        """The visitor's job, or NotFound: the same answer for unknown ids and other visitors' jobs."""
        valid = 0 < len(job_id) <= JOB_ID_MAX  # a longer id is no job's: not worth a query
        job = jobs.get_job(self.session, job_id, visitor_id=self.visitor.id) if valid else None
        if job is None:
            raise NotFound(ErrorCode.NOT_FOUND, "No such job.")
        return job

    def recent(self, limit: int = LIST_LIMIT) -> list[Job]:
        """The visitor's jobs, newest first."""
        return visitor_jobs(self.session, self.visitor.id, limit)

    def quota(self) -> QuotaOut:
        left = allowance(self.session, self.settings, self.visitor)
        return QuotaOut(
            limit=left.limit,
            used=min(left.used, left.limit),
            remaining=left.remaining,
            resets_at=as_utc(left.resets_at),
        )

    def media_key(self, job: Job, kind: Literal["video", "poster"]) -> str:
        """Where a finished job's clip or poster is stored; Conflict not_ready before it succeeded."""
        if job.status != JobStatus.SUCCEEDED.value:
            raise Conflict(
                ErrorCode.NOT_READY, f"The job is {job.status}; the {kind} exists once it has succeeded."
            )
        if kind == "video":
            return job.video_key or video_key(job.id)
        return job.poster_key or poster_key(job.id)

    # Changing.

    async def create(self, request: JobRequest, idempotency_key: str | None = None) -> Created:
        """Every check, then the job. Under an Idempotency-Key the visitor already used, the job the
        first submit created, before any check that could now refuse it (the allowance spent meanwhile)."""
        if idempotency_key is not None:
            existing = await to_thread.run_sync(find_idempotent, self.session, self.visitor, idempotency_key)
            if existing is not None:
                return Created(existing, replayed=True)
        accepted = await check_request(
            request, session=self.session, settings=self.settings, visitor=self.visitor
        )
        try:
            job = await self._create(accepted, idempotency_key)
        except DuplicateSubmit as dup:  # a concurrent retry committed first
            return Created(dup.job, replayed=True)
        return Created(job, replayed=False)

    async def again(self, job: Job, motion: str | None, seed: str | None) -> Job:
        """A new job from a copy of this job's stored photo, with another motion."""
        accepted = await check_again(
            job,
            motion,
            seed,
            session=self.session,
            settings=self.settings,
            store=self.store,
            visitor=self.visitor,
        )
        return await self._create(accepted)

    def cancel(self, job: Job) -> Job:
        """A queued job is canceled at once, a running one is asked to stop; Conflict already_final
        when it has ended. Returns the job as it now stands."""
        if JobStatus(job.status).is_final:
            raise _already_final(job)
        was_queued = job.status == JobStatus.QUEUED.value
        if not jobs.request_cancel(self.session, job):
            self.session.refresh(job)
            if JobStatus(job.status).is_final:
                raise _already_final(job)
        self.session.refresh(job)
        if was_queued and job.status == JobStatus.CANCELED.value:
            self._announce_canceled(job)
        return job

    def delete(self, job: Job) -> None:
        """The job's photo, clip, poster and row, now. StorageUnavailable leaves the row, so a retry
        finishes the job."""
        jobs.delete_job(self.session, self.store, job)

    # Helpers.

    async def _create(self, accepted: Accepted, idempotency_key: str | None = None) -> Job:
        make = functools.partial(
            create_job,
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
        return await to_thread.run_sync(make)  # it blocks on storage and the database

    def _announce_canceled(self, job: Job) -> None:
        """A queued job ends here, so no worker will announce it: send its `completed` event now.
        (A running one is announced by its worker when it stops.)"""
        wanted = job.webhook_events or webhooks.parse_events(None)
        if not job.webhook_url or "completed" not in wanted:
            return
        payload = job_out(self.session, job).model_dump(mode="json")
        try:
            enqueue_webhook(job.webhook_url, "completed", payload, celery=self.producer)
        except Exception as exc:  # the cancel stands whatever happens to the event
            log.warning("job %s: completed webhook not enqueued (%s)", job.id, type(exc).__name__)


def _already_final(job: Job) -> Conflict:
    return Conflict(ErrorCode.ALREADY_FINAL, f"The job already {job.status}.")


def visitor_jobs(session: Session, visitor_id: str, limit: int = LIST_LIMIT) -> list[Job]:
    """A visitor's jobs, newest first: the API's list and the pages' history both read this."""
    query = select(Job).where(Job.visitor_id == visitor_id).order_by(Job.created_at.desc())
    return list(session.scalars(query.limit(limit)))
