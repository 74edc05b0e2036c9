"""/api/v1/jobs: submit, list, read, follow, download, cancel and delete a visitor's jobs."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import ServerSentEvent

from app.core.errors import ErrorCode, NotFound, Refused
from app.core.schemas import API, ErrorOut, JobList, JobOut, QuotaOut, job_view, job_views
from app.core.service import JobService, MediaKind, clean_idempotency_key
from app.core.service.sharing import media_key
from app.core.storage import ObjectStore
from app.core.tables import Job, JobStatus
from app.web.deps import (
    MetricsDep,
    OwnedJobDep,
    OwnedJobReleasedDep,
    RateLimited,
    ServiceDep,
    SessionDep,
    SettingsDep,
    VisitorDep,
)
from app.web.errors import rejected
from app.web.forms import SmallFormDep, read_upload_form
from app.web.media import MediaFileResponse
from app.web.streams import SlotEventSourceResponse, shared_snapshots, stream_slots
from models.clip_shape import (
    CLIP_DEFAULT_S,
    CLIP_MAX_S,
    CLIP_MIN_S,
    HD_LONG_SIDE,
    RESOLUTIONS,
    UHD_LONG_SIDE,
    UHD_MIN_SHORT_SIDE,
    UHD_SHORT_SIDE,
)
from models.motion import CHANNELS
from models.motion_curves import CURVES_FPS, MAX_CURVES_BYTES, MAX_SAMPLES, MIN_SAMPLES

router = APIRouter(prefix=API, tags=["jobs"])

EVENTS_POLL_S = 0.5
EVENTS_MAX_S = 30 * 60  # a stream ends after this; EventSource reconnects by itself

DURATION_FIELD: dict[str, Any] = {
    "type": "string",
    "pattern": r"^[0-9]{1,2}(\.[0-9])?$",
    "examples": ["4", "7.5"],
    "description": (
        f"The clip's length in seconds, {CLIP_MIN_S:g} to {CLIP_MAX_S:g} in tenths; default "
        f"{CLIP_DEFAULT_S:g} (with motion_curves: the recording's own length, and never shorter). A "
        "longer clip gets more happening, not the same motion slowed down. A diffusion model keeps its own "
        "length and says so in `video.note`. 422 invalid_duration."
    ),
}
RESOLUTION_FIELD: dict[str, Any] = {
    "type": "string",
    "enum": list(RESOLUTIONS),
    "description": (
        f"hd (the default: the long side at most {HD_LONG_SIDE} px) or 4k (at most "
        f"{UHD_LONG_SIDE}x{UHD_SHORT_SIDE}, never more than the photo's own pixels); 4k needs a photo with "
        f"a short side of at least {UHD_MIN_SHORT_SIDE} px (the photo check's `resolutions` says), else 422 "
        "resolution_unavailable."
    ),
}
FACES_FIELD: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\s*[0-9]{1,2}\s*(,\s*[0-9]{1,2}\s*)*$",
    "maxLength": 64,
    "examples": ["0,2"],
    "description": (
        "The faces to animate, by their `index` in the photo check's `faces`, comma-separated; default: "
        "every movable face. The others keep still. 422 unknown_face or face_not_movable names a face "
        "that is not there or cannot move (the portrait animator moves at most 3); 422 faces_unsupported "
        "for a part of the faces with an animator that moves the whole picture (diffusion, push-in)."
    ),
}

UPLOAD_BODY: dict[str, Any] = {
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
                            "description": (
                                "A preset name or short text such as 'look left and smile'. Default: 'auto', "
                                "a motion planned from the photo's faces ('auto, and nod' adds to it)."
                            ),
                        },
                        "seed": {"type": "string", "pattern": "^[0-9]{1,10}$"},
                        "duration_s": DURATION_FIELD,
                        "resolution": RESOLUTION_FIELD,
                        "faces": FACES_FIELD,
                        "motion_curves": {
                            "type": "string",
                            "maxLength": MAX_CURVES_BYTES,
                            "description": (
                                "Motion recorded in the live view, as JSON: "
                                '{"fps": 24, "channels": {"yaw": [...], "smile": [...]}}. Channels: '
                                f"{', '.join(CHANNELS)} (one left out is 0); every list the same length, "
                                f"{MIN_SAMPLES} to {MAX_SAMPLES} samples at {CURVES_FPS} fps (sample i is "
                                "frame i); finite numbers within each channel's range (GET /v1/motions); at "
                                f"most {MAX_CURVES_BYTES} bytes. The clip renders exactly these samples, "
                                "the last few eased toward the first so it loops; a longer clip plays "
                                "them once and eases back to the first sample. With it, `motion` must be "
                                "empty or 'recorded'; the job's motion is then 'recorded'. Refused with "
                                "422 invalid_motion_curves."
                            ),
                        },
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


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
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
        "Without `motion` the job's motion is `auto`: planned from the photo's faces, and answered as "
        "`plan` (what it will do, in words). With `motion_curves` (recorded in the live view) the motion "
        "is `recorded`: the clip follows those curves, and `plan` describes them. "
        "With an `Idempotency-Key` header, a retried submit (same visitor, same key) answers 200 with "
        "the job the first one created, and spends no second animation of the allowance."
    ),
)
async def create_job(
    request: Request,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    service: ServiceDep,
    metrics: MetricsDep,
    idempotency_key: Annotated[
        str | None, Header(description="Any unique string per intended job (a UUID), at most 128 chars.")
    ] = None,
) -> JobOut:
    try:
        key = clean_idempotency_key(idempotency_key)
        form = await read_upload_form(request, settings)
        created = await service.create(form.job_request(form.motion), idempotency_key=key)
    except Refused as exc:
        raise rejected(metrics, exc) from exc
    response.headers["Location"] = f"{API}/jobs/{created.job.id}"
    if created.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    # In a thread: a pool checkout (or an SQLite busy wait) on the event loop would stall every request.
    return await to_thread.run_sync(job_view, session, created.job)


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
                            "description": "A preset or short text; default: auto, planned from the photo.",
                        },
                        "seed": {"type": "string", "pattern": "^[0-9]{1,10}$"},
                        "duration_s": {**DURATION_FIELD, "description": "Default: the job's own length."},
                        "resolution": {**RESOLUTION_FIELD, "description": "Default: the job's own size."},
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
    form: SmallFormDep,  # read before the job: no pooled connection waits on the client's body
    job: OwnedJobDep,
    session: SessionDep,
    service: ServiceDep,
    metrics: MetricsDep,
) -> JobOut:
    try:
        new = await service.again(
            job,
            _text(form.get("motion")),
            _text(form.get("seed")),
            _text(form.get("duration_s")),
            _text(form.get("resolution")),
        )
    except Refused as exc:
        raise rejected(metrics, exc) from exc
    response.headers["Location"] = f"{API}/jobs/{new.id}"
    return await to_thread.run_sync(job_view, session, new)  # off the event loop, as above


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@router.get("/jobs", response_model=JobList, summary="The visitor's jobs, newest first")
def list_jobs(session: SessionDep, service: ServiceDep) -> JobList:
    return JobList(jobs=job_views(session, service.recent()))


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_errors(404))
def get_job(job: OwnedJobDep, session: SessionDep) -> JobOut:
    return job_view(session, job)


def _snapshot(sessions: sessionmaker[Session], job_id: str) -> JobOut | None:
    with sessions() as session:
        job = session.get(Job, job_id)
        return job_view(session, job) if job is not None else None


@router.get(
    "/jobs/{job_id}/events",
    dependencies=[RateLimited],
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {"description": "The job is final and the client saw it (Last-Event-ID)"},
        **_errors(404, 429),
    },
    summary="Server-Sent Events: one `job` event with the Job per change, until the job is final",
    description=(
        "A visitor may hold a few streams open at once (Settings.event_streams_per_visitor, and "
        "event_streams_per_address per client address); one more answers 429 `rate_limited` with "
        "Retry-After. A stream holds no database connection: the streams of a job share its polls, each of "
        "which takes one for a moment."
    ),
)
async def job_events(
    request: Request, job: OwnedJobReleasedDep, visitor: VisitorDep, settings: SettingsDep
) -> Response:
    # No request-scoped session here: one would keep its pooled connection until the response ends,
    # up to EVENTS_MAX_S later, and a few dozen streams would drain the pool. The job was read with a
    # session already closed (OwnedJobReleasedDep); the polls below each borrow a connection briefly.
    sessions: sessionmaker[Session] = request.app.state.sessions
    poll_s: float = getattr(request.app.state, "events_poll_s", EVENTS_POLL_S)
    job_id, status = job.id, JobStatus(job.status)
    # A browser's EventSource reconnects whenever a stream ends; once it has seen the final state,
    # 204 tells it to stop (the event id carries the status it last saw).
    if status.is_final and request.headers.get("last-event-id") == status.value:
        return Response(status_code=204)
    # The streams of one job share its polls (one short session per poll, not one per stream).
    snapshots = shared_snapshots(request.app.state, functools.partial(_snapshot, sessions))

    async def events() -> AsyncIterator[ServerSentEvent]:
        seen: JobOut | None = None
        last = None
        deadline = time.monotonic() + EVENTS_MAX_S
        while time.monotonic() < deadline:
            try:
                current = await snapshots.get(job_id, max_age_s=poll_s / 2)
            except (OperationalError, PoolTimeout):  # a database blip: try again next poll
                await asyncio.sleep(poll_s * 4)
                continue
            if current is None:  # deleted meanwhile
                return
            if current is not seen:  # a new snapshot (a shared one is handed out again as it is)
                seen = current
                data = current.model_dump_json()
                if data != last:
                    last = data
                    yield ServerSentEvent(data=data, event="job", id=current.status)
            if JobStatus(current.status).is_final or await request.is_disconnected():
                return
            await asyncio.sleep(poll_s)

    # Taken last, right before the response that gives it back however the stream ends (or 429).
    slot = await stream_slots(request.app.state, settings).acquire_async(visitor.id, visitor.ip_hash)
    return SlotEventSourceResponse(events(), slot=slot, ping=15, headers={"Cache-Control": "no-store"})


MEDIA_TYPES = {"video": "video/mp4", "poster": "image/jpeg", "gif": "image/gif", "photo": "image/jpeg"}
EXTENSIONS = {"video": "mp4", "poster": "jpg", "gif": "gif", "photo": "jpg"}


def _media(
    job: Job, service: JobService, kind: MediaKind, download: bool, head: bool = False
) -> RedirectResponse | MediaFileResponse:
    return media_response(
        job, kind, service.store, service.settings.presigned_url_ttl_s, download=download, head=head
    )


def media_response(
    job: Job,
    kind: MediaKind,
    store: ObjectStore,
    ttl_s: int,
    *,
    download: bool = False,
    head: bool = False,
    headers: dict[str, str] | None = None,
) -> RedirectResponse | MediaFileResponse:
    """One of the job's files: a short-lived presigned URL (S3) or the file itself with Range (local)."""
    key = media_key(job, kind)
    filename = f"vivify-{job.id}.{EXTENSIONS[kind]}"
    url = store.presigned_url(key, ttl_s, filename=filename if download else None, head=head)
    if url is not None:
        # Handed only to the job's owner or a holder of its share link, valid for minutes; never logged.
        return RedirectResponse(
            url, status_code=307, headers={"Cache-Control": "no-store", **(headers or {})}
        )
    path = store.local_path(key)
    try:
        stat = path.stat() if path is not None else None
    except FileNotFoundError:  # deleted (retention) since the job was read
        stat = None
    if path is None or stat is None:
        raise NotFound(ErrorCode.GONE, f"The {kind} is no longer stored.")
    return MediaFileResponse(
        path,
        what=kind,
        stat_result=stat,
        media_type=MEDIA_TYPES[kind],
        filename=filename if download else None,
        content_disposition_type="attachment" if download else "inline",
        headers={"Cache-Control": "private, max-age=3600", **(headers or {})},
    )


Download = Annotated[bool, Query(description="Serve as an attachment named vivify-<id>.mp4")]
MEDIA_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"video/mp4": {}, "image/jpeg": {}, "image/gif": {}}},
    206: {"description": "Partial content (Range)"},
    307: {"description": "Redirect to a short-lived presigned URL (S3 storage)"},
    **_errors(404, 409, 416),
}
MEDIA_RANGES = (
    "Range requests (RFC 9110): one or more byte ranges answer 206; a reversed range (`bytes=5-1`) or "
    "one that is not satisfiable (`bytes=-0`, past the end) answers 416 `range_not_satisfiable` with "
    "`Content-Range: bytes */<size>`; a Range that is not a byte range set is ignored (200, whole)."
)


@router.get("/jobs/{job_id}/video", responses=MEDIA_RESPONSES, response_model=None, description=MEDIA_RANGES)
def get_video(
    job: OwnedJobDep, service: ServiceDep, download: Download = False
) -> RedirectResponse | MediaFileResponse:
    return _media(job, service, "video", download)


@router.head(
    "/jobs/{job_id}/video",
    responses=MEDIA_RESPONSES,
    response_model=None,
    summary="The video's headers, as GET answers them, without the body",
)
def head_video(
    job: OwnedJobDep, service: ServiceDep, download: Download = False
) -> RedirectResponse | MediaFileResponse:
    return _media(job, service, "video", download, head=True)


@router.get("/jobs/{job_id}/poster", responses=MEDIA_RESPONSES, response_model=None, description=MEDIA_RANGES)
def get_poster(
    job: OwnedJobDep, service: ServiceDep, download: Download = False
) -> RedirectResponse | MediaFileResponse:
    return _media(job, service, "poster", download)


@router.head(
    "/jobs/{job_id}/poster",
    responses=MEDIA_RESPONSES,
    response_model=None,
    summary="The poster's headers, as GET answers them, without the body",
)
def head_poster(
    job: OwnedJobDep, service: ServiceDep, download: Download = False
) -> RedirectResponse | MediaFileResponse:
    return _media(job, service, "poster", download, head=True)


@router.get(
    "/jobs/{job_id}/gif",
    responses=MEDIA_RESPONSES,
    response_model=None,
    description="The clip as an animated GIF (`urls.gif`); 404 gone when none could be made. " + MEDIA_RANGES,
)
def get_gif(
    job: OwnedJobDep, service: ServiceDep, download: Download = False
) -> RedirectResponse | MediaFileResponse:
    return _media(job, service, "gif", download)


@router.get(
    "/jobs/{job_id}/photo",
    responses=MEDIA_RESPONSES,
    response_model=None,
    description="The job's photo as stored (re-encoded, no metadata), for the before/after view; its "
    "owner's only, never shared. " + MEDIA_RANGES,
)
def get_photo(
    job: OwnedJobDep, service: ServiceDep, download: Download = False
) -> RedirectResponse | MediaFileResponse:
    return _media(job, service, "photo", download)


@router.post(
    "/jobs/{job_id}/cancel",
    status_code=202,
    response_model=JobOut,
    dependencies=[RateLimited],
    responses=_errors(403, 404, 409, 429),
    summary="Cancel a queued or running job",
)
def cancel_job(job: OwnedJobDep, session: SessionDep, service: ServiceDep) -> JobOut:
    return job_view(session, service.cancel(job))


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    dependencies=[RateLimited],
    responses=_errors(403, 404, 429, 503),
    summary="Delete the photo, clip and poster now",
)
def delete_job(job: OwnedJobDep, service: ServiceDep) -> Response:
    service.delete(job)  # StorageUnavailable → 503, and a retry finishes the job
    return Response(status_code=204)


@router.get("/quota", response_model=QuotaOut, summary="The visitor's free allowance left today")
def get_quota(service: ServiceDep) -> QuotaOut:
    return service.quota()
