"""The job service: everything a visitor can do with jobs, for the JSON API and the pages alike.

Create (every check, then storage, the row and only then the queue), animate again, cancel, delete,
the owner's lookup and the listings. Refusals are domain errors (app.core.errors); the web tier decides
how they are answered. Nothing here knows about HTTP, so the rules cannot drift between the API and
the no-JavaScript pages.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from anyio import to_thread
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.config import Settings
from app.core.endings import JobEnding
from app.core.errors import Conflict, ErrorCode, NotFound
from app.core.schemas import QuotaOut, as_utc
from app.core.service.create import (
    Accepted,
    DuplicateSubmit,
    JobCounters,
    JobRequest,
    check_again,
    check_replay,
    check_request,
    create_job,
    find_idempotent,
    request_fingerprint,
)
from app.core.service.fields import (
    MAX_MOTION_CHARS,
    MAX_SEED,
    clean_idempotency_key,
    clean_motion,
    parse_seed,
)
from app.core.service.photos import PhotoCheck, analyse_upload, check_photo
from app.core.service.sharing import MediaKind, media_key, share_job, shared_job, unshare_job
from app.core.storage import ObjectStore
from app.core.tables import Job, JobStatus
from app.core.visitors import Visitor, allowance

__all__ = [
    "MAX_MOTION_CHARS",
    "MAX_SEED",
    "Created",
    "JobRequest",
    "JobService",
    "MediaKind",
    "PhotoCheck",
    "analyse_upload",
    "check_photo",
    "clean_idempotency_key",
    "clean_motion",
    "create_job",
    "parse_seed",
    "shared_job",
    "visitor_jobs",
]

JOB_ID_MAX = 64
LIST_LIMIT = 50


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

    def media_key(self, job: Job, kind: MediaKind) -> str:
        """Where a job's photo, or a finished job's clip, poster or GIF, is stored (sharing.media_key)."""
        return media_key(job, kind)

    # Changing.

    async def create(self, request: JobRequest, idempotency_key: str | None = None) -> Created:
        """Every check, then the job. Under an Idempotency-Key the visitor already used, the job the
        first submit created, before any check that could now refuse it (the allowance spent meanwhile);
        Invalid idempotency_key_reused (422) when that submit asked for another photo or other fields."""
        fingerprint = None
        if idempotency_key is not None:
            fingerprint = await to_thread.run_sync(request_fingerprint, request)  # hashes the photo
            existing = await to_thread.run_sync(find_idempotent, self.session, self.visitor, idempotency_key)
            if existing is not None:
                return Created(check_replay(existing, fingerprint), replayed=True)
        accepted = await check_request(
            request, session=self.session, settings=self.settings, visitor=self.visitor
        )
        try:
            job = await self._create(accepted, idempotency_key, fingerprint)
        except DuplicateSubmit as dup:  # a concurrent retry committed first
            return Created(check_replay(dup.job, fingerprint), replayed=True)
        return Created(job, replayed=False)

    async def again(
        self,
        job: Job,
        motion: str | None,
        seed: str | None,
        duration_s: str | None = None,
        resolution: str | None = None,
    ) -> Job:
        """A new job from a copy of this job's stored photo, with another motion (and the job's length and
        size unless others are sent)."""
        accepted = await check_again(
            job,
            motion,
            seed,
            duration_s,
            resolution,
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
        # A queued job ends here (no worker will end it); a running one ends when its run stops.
        ending = JobEnding(self.settings, celery=self.producer, store=self.store)
        queued = job.status == JobStatus.QUEUED.value
        ended = queued and ending.canceled(self.session, job.id) == "canceled"
        if not ended and not jobs.request_stop(self.session, job.id):
            self.session.refresh(job)
            if JobStatus(job.status).is_final:
                raise _already_final(job)
        self.session.refresh(job)
        return job

    def share(self, job: Job) -> str:
        """The job's share token (sharing.share_job): made on the first ask, the same one after."""
        return share_job(self.session, job)

    def unshare(self, job: Job) -> None:
        unshare_job(self.session, job)

    def delete(self, job: Job) -> None:
        """The job's photo, clip, poster and row, now. StorageUnavailable leaves the row, so a retry
        finishes the job."""
        jobs.delete_job(self.session, self.store, job)

    # Helpers.

    async def _create(
        self, accepted: Accepted, idempotency_key: str | None = None, fingerprint: str | None = None
    ) -> Job:
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
            motion_plan=accepted.plan,
            request_fingerprint=fingerprint,
            motion_curves=accepted.curves,
            duration_s=accepted.duration_s,
            resolution=accepted.resolution,
            faces=accepted.faces,
        )
        return await to_thread.run_sync(make)  # it blocks on storage and the database


def _already_final(job: Job) -> Conflict:
    return Conflict(ErrorCode.ALREADY_FINAL, f"The job already {job.status}.")


def visitor_jobs(session: Session, visitor_id: str, limit: int = LIST_LIMIT) -> list[Job]:
    """A visitor's jobs, newest first: the API's list and the pages' history both read this."""
    query = select(Job).where(Job.visitor_id == visitor_id).order_by(Job.created_at.desc())
    return list(session.scalars(query.limit(limit)))
