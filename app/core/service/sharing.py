"""Share links: a job's clip, readable by whoever holds the link, and nothing else of the visitor.

The token is 256 random bits, so it cannot be guessed or enumerated; it lives in the job's row, so it
ends with the job (deleted by its owner or at expiry) and when the owner revokes it."""

from __future__ import annotations

import secrets
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import Conflict, ErrorCode, NotFound
from app.core.schemas import as_utc
from app.core.storage import gif_key, poster_key, video_key
from app.core.tables import Job, JobStatus, utcnow

MediaKind = Literal["video", "poster", "gif", "photo"]
SHARED_KINDS: tuple[MediaKind, ...] = ("video", "poster", "gif")  # never the photo
NOT_SHARED_MESSAGE = "This share link does not exist, was revoked, or its clip has expired."


def share_job(session: Session, job: Job) -> str:
    """The job's share token, made now unless it has one; Conflict not_ready before it succeeded."""
    if job.status != JobStatus.SUCCEEDED.value:
        raise Conflict(ErrorCode.NOT_READY, f"The job is {job.status}; only a finished clip can be shared.")
    if job.share_token is None:
        job.share_token = secrets.token_urlsafe(32)
        session.commit()
    return job.share_token


def unshare_job(session: Session, job: Job) -> None:
    """Revoke the link: the token is forgotten, so every copy of the link stops working at once."""
    if job.share_token is not None:
        job.share_token = None
        session.commit()


def shared_job(session: Session, token: str) -> Job:
    """The finished, unexpired job this token shares; NotFound not_shared otherwise."""
    job = None
    if 20 <= len(token) <= 64:
        job = session.scalar(select(Job).where(Job.share_token == token))
    if job is None or job.status != JobStatus.SUCCEEDED.value or as_utc(job.expires_at) <= utcnow():
        raise NotFound(ErrorCode.NOT_SHARED, NOT_SHARED_MESSAGE)
    return job


def media_key(job: Job, kind: MediaKind) -> str:
    """Where a job's photo, or a finished job's clip, poster or GIF, is stored; Conflict not_ready before
    it succeeded, NotFound gone for a GIF that could not be made or a photo no longer kept."""
    if kind == "photo":
        if job.photo_key is None:
            raise NotFound(ErrorCode.GONE, "The photo is no longer stored.")
        return job.photo_key
    if job.status != JobStatus.SUCCEEDED.value:
        raise Conflict(
            ErrorCode.NOT_READY, f"The job is {job.status}; the {kind} exists once it has succeeded."
        )
    if kind == "video":
        return job.video_key or video_key(job.id)
    if kind == "gif":
        if not (job.video_info or {}).get("gif"):
            raise NotFound(ErrorCode.GONE, "No GIF could be made of this clip; the MP4 is there.")
        return gif_key(job.id)
    return job.poster_key or poster_key(job.id)
