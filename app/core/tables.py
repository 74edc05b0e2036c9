"""SQLAlchemy table models. They never leave the app: the API answers with app.core.schemas models."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_job_id() -> str:
    # 128 random bits, URL-safe: unguessable, never derived from the upload.
    return secrets.token_urlsafe(16)


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    def __str__(self) -> str:  # "queued" in messages and templates, as enum.StrEnum does (Python 3.11+)
        return self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

# Job.status: stored by value in the VARCHAR(16) the migrations created (no database enum type, no
# CHECK constraint), read back as a JobStatus.
_STATUS_TYPE = Enum(
    JobStatus,
    native_enum=False,
    create_constraint=False,
    length=16,
    values_callable=lambda statuses: [s.value for s in statuses],
)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    visitor_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[JobStatus] = mapped_column(_STATUS_TYPE, default=JobStatus.QUEUED, index=True)
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    stage_detail: Mapped[str] = mapped_column(String(64), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)

    motion: Mapped[str | None] = mapped_column(String(200))
    # The motion planned from the photo at submit (models.auto_motion's PlannedMotion.to_json), for the
    # visitor to read; None when planning failed, and for jobs from before plans.
    motion_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Curves recorded in the live view (models.motion_curves' RecordedMotion.to_json): then they are the
    # motion, and `motion` is "recorded". None for every other job.
    motion_curves: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    # The clip as asked: its length in seconds (3-10) and size (hd or 4k, models.clip_shape).
    duration_s: Mapped[float] = mapped_column(Float, default=4.0, server_default="4")
    resolution: Mapped[str] = mapped_column(String(8), default="hd", server_default="hd")
    animator: Mapped[str] = mapped_column(String(200))  # a name or a `package.module:Class` path
    model: Mapped[str | None] = mapped_column(String(300))
    queue: Mapped[str] = mapped_column(String(64), default="animate")
    # Celery message priority the job was sent with (Redis: 0 is served first).
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # A client's Idempotency-Key: a retried submit with the same key returns this job.
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    # With a key: a hash of what was asked (photo bytes, motion, seed, animator, webhook and its events),
    # so a retry that asks for something else is refused. None without a key and for older jobs.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_events: Mapped[list[str] | None] = mapped_column(JSON)

    photo_key: Mapped[str | None] = mapped_column(String(200))
    photo_width: Mapped[int] = mapped_column(Integer, default=0)
    photo_height: Mapped[int] = mapped_column(Integer, default=0)
    photo_bytes: Mapped[int] = mapped_column(Integer, default=0)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The faces the visitor chose to move ([{"index", "box"}], app.core.service.faces); None: every
    # movable face. The worker matches them by box, so a detector's order never matters.
    faces: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # The share link's secret (app.core.service.sharing); None while the job is not shared.
    share_token: Mapped[str | None] = mapped_column(String(64))

    video_key: Mapped[str | None] = mapped_column(String(200))
    poster_key: Mapped[str | None] = mapped_column(String(200))
    video_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    stage_seconds: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The clip check's figures and verdict (models.clip_check's ClipCheck.to_json), with what the guard
    # did: set when the job succeeded, or failed as clip_check_failed. None otherwise and for older jobs.
    clip_check: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))

    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    enqueued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # Seconds from start to finish of a succeeded job: the queue's ETA is the mean of the latest.
    run_s: Mapped[float | None] = mapped_column(Float)
    # When the `completed` webhook was handed to the broker (or found not wanted). A final job with a
    # webhook and none is re-announced by the reconciler: the broker was down as it ended, or its
    # worker died between the commit and the send.
    completed_event_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (
        Index("ix_jobs_visitor_created", "visitor_id", "created_at"),
        # NULL keys never collide (SQLite and Postgres both treat NULLs as distinct here).
        Index("uq_jobs_visitor_idempotency", "visitor_id", "idempotency_key", unique=True),
        Index("uq_jobs_share_token", "share_token", unique=True),
    )


class Submission(Base):
    """One row per accepted upload, kept after the job is deleted so the daily allowance holds."""

    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    visitor_id: Mapped[str] = mapped_column(String(64), index=True)
    ip_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
