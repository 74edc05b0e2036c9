"""/api/v1/jobs: submit, list, read, follow, download, cancel and delete a visitor's jobs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.core import jobs, webhooks
from app.core.queue import enqueue_webhook
from app.core.schemas import API, ErrorOut, JobList, JobOut, QuotaOut, as_utc, job_out
from app.core.storage import ObjectStore, poster_key, video_key
from app.core.tables import Job, JobStatus
from app.core.visitors import allowance
from app.web import submit
from app.web.deps import (
    JobMakerDep,
    MetricsDep,
    OwnedJobDep,
    ProducerDep,
    RateLimited,
    SessionDep,
    SettingsDep,
    StoreDep,
    VisitorDep,
)
from app.web.errors import ApiError
from app.web.forms import read_upload_form

log = logging.getLogger("vivify.api.jobs")
router = APIRouter(prefix=API, tags=["jobs"])

EVENTS_POLL_S = 0.5
EVENTS_MAX_S = 30 * 60  # a stream ends after this; EventSource reconnects by itself
LIST_LIMIT = 50

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["photo", "consent"],
                    "properties": {
                        "photo": {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP"},
                        "consent": {
                            "type": "string",
                            "enum": ["true", "on"],
                            "description": "The visitor confirms they may animate this photo.",
                        },
                        "motion": {
                            "type": "string",
                            "maxLength": 200,
                            "description": "A preset name or short text such as 'look left and smile'.",
                        },
                        "seed": {"type": "string", "pattern": "^[0-9]{1,10}$"},
                        "animator": {
                            "type": "string",
                            "description": "One of the animators the service offers; default: the first.",
                        },
                        "webhook": {
                            "type": "string",
                            "format": "uri",
                            "maxLength": 2000,
                            "description": "HTTPS URL that receives signed job events (Standard Webhooks).",
                        },
                        "webhook_events_filter": {
                            "type": "string",
                            "description": "start, progress, completed (comma list)",
                        },
                    },
                }
            }
        },
    }
}


def _errors(*codes: int) -> dict[int | str, dict]:
    return {code: {"model": ErrorOut} for code in codes}


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    dependencies=[RateLimited],
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {"model": JobOut, "description": "A retried submit (same Idempotency-Key)"},
        **_errors(400, 403, 413, 415, 422, 429, 503),
    },
    summary="Upload a photo and start an animation",
    description=(
        "With an `Idempotency-Key` header, a retried submit (same visitor, same key) answers 200 with "
        "the job the first one created, and spends no second animation of the allowance."
    ),
)
async def create_job(
    request: Request,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    maker: JobMakerDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
    idempotency_key: Annotated[
        str | None, Header(description="Any unique string per intended job (a UUID), at most 128 chars.")
    ] = None,
) -> JobOut:
    try:
        key = submit.clean_idempotency_key(idempotency_key)
        form = await read_upload_form(request, settings)
        # A retry is answered before any check that could now refuse it (allowance spent meanwhile).
        existing = await run_in_threadpool(submit.find_idempotent, session, visitor, key)
        if existing is not None:
            return _replayed(response, session, existing)
        accepted = await submit.check_submission(
            form, form.motion, session=session, settings=settings, visitor=visitor
        )
    except ApiError as exc:
        metrics.uploads_rejected.labels(exc.code).inc()
        raise
    try:
        job = await maker.create(accepted, idempotency_key=key)
    except submit.DuplicateSubmit as dup:  # a concurrent retry committed first
        return _replayed(response, session, dup.job)
    response.headers["Location"] = f"{API}/jobs/{job.id}"
    return job_out(session, job)


AGAIN_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            media: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "motion": {
                            "type": "string",
                            "maxLength": 200,
                            "description": "A preset name or short text; default: the gentle default motion.",
                        },
                        "seed": {"type": "string", "pattern": "^[0-9]{1,10}$"},
                    },
                }
            }
            for media in ("multipart/form-data", "application/x-www-form-urlencoded")
        },
    }
}


@router.post(
    "/jobs/{job_id}/again",
    status_code=202,
    response_model=JobOut,
    dependencies=[RateLimited],
    openapi_extra=AGAIN_BODY,
    responses=_errors(400, 403, 404, 409, 422, 429, 503),
    summary="Animate a job's photo again, with another motion",
    description=(
        "A new job from a copy of this job's stored photo (consent and the photo report carry over). "
        "409 `photo_gone` once the photo has expired or was deleted."
    ),
)
async def animate_again(
    request: Request,
    response: Response,
    job: OwnedJobDep,
    settings: SettingsDep,
    session: SessionDep,
    store: StoreDep,
    maker: JobMakerDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
) -> JobOut:
    try:
        form = await request.form(max_files=0, max_fields=8)
        motion, seed = _text(form.get("motion")), _text(form.get("seed"))
        accepted = await submit.check_again(
            job, motion, seed, session=session, settings=settings, store=store, visitor=visitor
        )
        new = await maker.create(accepted)
    except ApiError as exc:
        metrics.uploads_rejected.labels(exc.code).inc()
        raise
    response.headers["Location"] = f"{API}/jobs/{new.id}"
    return job_out(session, new)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _replayed(response: Response, session: Session, job: Job) -> JobOut:
    response.status_code = 200
    response.headers["Location"] = f"{API}/jobs/{job.id}"
    response.headers["Idempotent-Replayed"] = "true"
    return job_out(session, job)


@router.get("/jobs", response_model=JobList, summary="The visitor's jobs, newest first")
def list_jobs(session: SessionDep, visitor: VisitorDep) -> JobList:
    rows = session.scalars(
        select(Job).where(Job.visitor_id == visitor.id).order_by(Job.created_at.desc()).limit(LIST_LIMIT)
    ).all()
    return JobList(jobs=[job_out(session, job) for job in rows])


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_errors(404))
def get_job(job: OwnedJobDep, session: SessionDep) -> JobOut:
    return job_out(session, job)


def _snapshot(sessions: sessionmaker[Session], job_id: str) -> JobOut | None:
    with sessions() as session:
        job = session.get(Job, job_id)
        return job_out(session, job) if job is not None else None


@router.get(
    "/jobs/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}}, **_errors(404)},
    summary="Server-Sent Events: one `job` event with the Job per change, until the job is final",
)
async def job_events(request: Request, job: OwnedJobDep) -> Response:
    sessions: sessionmaker[Session] = request.app.state.sessions
    poll_s: float = getattr(request.app.state, "events_poll_s", EVENTS_POLL_S)
    job_id = job.id
    # A browser's EventSource reconnects whenever a stream ends; once it has seen the final state,
    # 204 tells it to stop (the event id carries the status it last saw).
    if JobStatus(job.status).is_final and request.headers.get("last-event-id") == job.status:
        return Response(status_code=204)

    async def events() -> AsyncIterator[ServerSentEvent]:
        last = None
        deadline = time.monotonic() + EVENTS_MAX_S
        while time.monotonic() < deadline:
            try:
                current = await run_in_threadpool(_snapshot, sessions, job_id)
            except (OperationalError, PoolTimeout):  # a database blip: try again next poll
                await asyncio.sleep(poll_s * 4)
                continue
            if current is None:  # deleted meanwhile
                return
            data = current.model_dump_json()
            if data != last:
                last = data
                yield ServerSentEvent(data=data, event="job", id=current.status)
            if JobStatus(current.status).is_final or await request.is_disconnected():
                return
            await asyncio.sleep(poll_s)

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})


def _media(
    job: Job, store: ObjectStore, ttl_s: int, kind: str, download: bool
) -> RedirectResponse | FileResponse:
    if job.status != JobStatus.SUCCEEDED.value:
        raise ApiError(409, "not_ready", f"The job is {job.status}; the {kind} exists once it has succeeded.")
    is_video = kind == "video"
    key = (job.video_key or video_key(job.id)) if is_video else (job.poster_key or poster_key(job.id))
    filename = f"vivify-{job.id}.{'mp4' if is_video else 'jpg'}"
    url = store.presigned_url(key, ttl_s, filename=filename if download else None)
    if url is not None:
        # Handed only to the job's owner, valid for minutes; never logged.
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    path = store.local_path(key)
    if path is None:
        raise ApiError(404, "gone", f"The {kind} is no longer stored.")
    return FileResponse(
        path,
        media_type="video/mp4" if is_video else "image/jpeg",
        filename=filename if download else None,
        content_disposition_type="attachment" if download else "inline",
        headers={"Cache-Control": "private, max-age=3600"},
    )


Download = Annotated[bool, Query(description="Serve as an attachment named vivify-<id>.mp4")]
MEDIA_RESPONSES = {
    200: {"content": {"video/mp4": {}, "image/jpeg": {}}},
    206: {"description": "Partial content (Range)"},
    307: {"description": "Redirect to a short-lived presigned URL (S3 storage)"},
    **_errors(404, 409),
}


@router.get("/jobs/{job_id}/video", responses=MEDIA_RESPONSES, response_model=None)
def get_video(
    job: OwnedJobDep, store: StoreDep, settings: SettingsDep, download: Download = False
) -> RedirectResponse | FileResponse:
    return _media(job, store, settings.presigned_url_ttl_s, "video", download)


@router.get("/jobs/{job_id}/poster", responses=MEDIA_RESPONSES, response_model=None)
def get_poster(
    job: OwnedJobDep, store: StoreDep, settings: SettingsDep, download: Download = False
) -> RedirectResponse | FileResponse:
    return _media(job, store, settings.presigned_url_ttl_s, "poster", download)


@router.post(
    "/jobs/{job_id}/cancel",
    status_code=202,
    response_model=JobOut,
    dependencies=[RateLimited],
    responses=_errors(403, 404, 409, 429),
    summary="Cancel a queued or running job",
)
def cancel_job(job: OwnedJobDep, session: SessionDep, producer: ProducerDep) -> JobOut:
    if JobStatus(job.status).is_final:
        raise ApiError(409, "already_final", f"The job already {job.status}.")
    was_queued = job.status == JobStatus.QUEUED.value
    if not jobs.request_cancel(session, job):
        session.refresh(job)
        if JobStatus(job.status).is_final:
            raise ApiError(409, "already_final", f"The job already {job.status}.")
    session.refresh(job)
    out = job_out(session, job)
    # A queued job ends here, so no worker will announce it: send its `completed` event now.
    # (A running one is announced by its worker when it stops.)
    wanted = job.webhook_events or webhooks.parse_events(None)
    if was_queued and out.status == "canceled" and job.webhook_url and "completed" in wanted:
        try:
            enqueue_webhook(job.webhook_url, "completed", out.model_dump(mode="json"), celery=producer)
        except Exception as exc:  # the cancel stands whatever happens to the event
            log.warning("job %s: completed webhook not enqueued (%s)", job.id, type(exc).__name__)
    return out


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    dependencies=[RateLimited],
    responses=_errors(403, 404, 429, 503),
    summary="Delete the photo, clip and poster now",
)
def delete_job(job: OwnedJobDep, session: SessionDep, store: StoreDep) -> Response:
    jobs.delete_job(session, store, job)  # StorageUnavailable → 503, and a retry finishes the job
    return Response(status_code=204)


@router.get("/quota", response_model=QuotaOut, summary="The visitor's free allowance left today")
def get_quota(session: SessionDep, settings: SettingsDep, visitor: VisitorDep) -> QuotaOut:
    left = allowance(session, settings, visitor)
    used = min(left.used, left.limit)
    return QuotaOut(limit=left.limit, used=used, remaining=left.remaining, resets_at=as_utc(left.resets_at))
