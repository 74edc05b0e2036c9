"""What the API answers with. Table rows never leave the app; they are turned into these models here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from app.core.clip_words import clip_check_summary
from app.core.tables import Job, JobStatus
from app.core.waits import NO_WAIT, Wait, wait_of, waits

API = "/api/v1"


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_photo"])
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class PhotoOut(BaseModel):
    width: int
    height: int
    bytes: int
    quality: dict[str, Any] | None = Field(
        None, description="Quality report of the photo: score (0-1), faces (count), tips (list of strings)."
    )


class JobError(BaseModel):
    code: str
    message: str


class JobUrls(BaseModel):
    self: str
    events: str
    video: str | None = Field(None, description="Set once the job succeeded.")
    poster: str | None = Field(None, description="Set once the job succeeded.")
    download: str | None = Field(None, description="The video as an attachment; set once the job succeeded.")
    gif: str | None = Field(
        None,
        description="An animated GIF of the clip (at most 480 px on the long side and 10 MB); set once "
        "the job succeeded, unless no GIF could be made (the job succeeds anyway).",
    )
    photo: str = Field(
        description="The job's photo as stored (the before/after view shows it beside the clip)."
    )
    share: str = Field(
        description='POST here for a share link ({"url": …}), DELETE to revoke it; only once succeeded.'
    )
    cancel: str | None = Field(None, description="Set while the job can still be canceled.")
    again: str = Field(description="POST here to animate the same photo again with another motion.")


class MotionPlanOut(BaseModel):
    """The motion planned for a photo (models.auto_motion), as the visitor reads it."""

    model_config = ConfigDict(allow_inf_nan=False)

    description: str = Field(
        min_length=1, description='The planned motion in words, e.g. "turns toward you, then smiles".'
    )
    peaks: dict[str, float] = Field(
        description=(
            "The largest movement per channel over the clip, of the main face: yaw, pitch and roll in "
            "degrees; gaze as a fraction of the eye's half-width; blink, smile, brow and breath 0-1."
        )
    )
    intensity: float = Field(ge=0, le=1, description="Overall motion strength, 0-1.")


def plan_out(data: dict[str, Any] | None) -> MotionPlanOut | None:
    """A stored plan for the API, or None: a missing or unreadable plan never fails a job's answer."""
    if not data:
        return None
    try:
        return MotionPlanOut.model_validate(data)
    except ValidationError:
        return None


class FaceCheckOut(BaseModel):
    index: int = Field(description="The face's place in the photo, largest first (0 = the main face).")
    height_px: float = Field(
        description="The face's height in the clip; under 64 px its likeness and jitter are not judged."
    )
    identity_max: float | None = Field(
        description="The largest face-descriptor distance to the photo over sampled frames; under 0.6 is "
        "the same person. None when the face was not found where a descriptor was taken."
    )
    identity_mean: float | None
    kept: float = Field(ge=0, le=1, description="Share of sampled frames in which this face was found.")
    jitter: float | None = Field(
        description="Largest mean landmark acceleration per frame², as a share of face height."
    )
    life: float | None = Field(description="Largest face motion, as a share of face height.")


class GuardFallbackOut(BaseModel):
    action: Literal["retried", "portrait"] = Field(
        description="retried: rendered again with a new seed and a calmer motion; portrait: then made by "
        "the portrait animator."
    )
    reason: str = Field(description="What the first clip failed.")
    retry_seed: int
    retry_failed: str | None = Field(None, description="What the second try failed, when it did.")
    error: str | None = Field(None, description="Why the portrait animator could not make the clip.")


class ClipCheckOut(BaseModel):
    """The clip check (models.clip_check): measured on the delivered MP4 before the job ended."""

    passed: bool
    identity_distance: float | None = Field(
        description="The largest face-descriptor distance over faces and sampled frames (dlib's ResNet; "
        "under 0.6 is the same person). None for a photo without a face."
    )
    faces: list[FaceCheckOut]
    jitter: float | None = Field(description="The largest landmark jitter over faces.")
    flicker: float | None = Field(
        description="Largest frame-to-frame change of the static background's mean lightness (ΔL*)."
    )
    color_delta_e: float | None = Field(
        description="Largest CIEDE2000 difference of the background's mean colour from the photo's."
    )
    life: float | None = Field(description="The largest face motion as a share of face height.")
    seam: float | None = Field(
        description="Mean ΔL* between the last and first frames, where the motion promises a loop."
    )
    seconds: float = Field(description="What the check cost (all tries: the last one's).")
    sampled_frames: int
    failures: list[str] = Field(description="What failed, in words; empty when it passed.")
    rendered_by: str | None = Field(description="The animator that made the clip.")
    fallback: GuardFallbackOut | None = Field(description="None, or what the guard did and why.")
    summary: str = Field(
        description='The check in one plain line, e.g. "Likeness checked: same person (0.14)"; what the '
        "page and the CLI show."
    )


def clip_check_out(data: dict[str, Any] | None) -> ClipCheckOut | None:
    """A stored clip check for the API, or None (older jobs; an unreadable record never fails an answer)."""
    if not data:
        return None
    try:
        return ClipCheckOut.model_validate({**data, "summary": clip_check_summary(data)})
    except ValidationError:
        return None


class VideoOut(BaseModel):
    """The clip as made: its size, length and file."""

    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    bytes: int
    note: str | None = Field(
        None,
        description="How the clip differs from what was asked, in words: a diffusion model keeps its own "
        "length and size.",
    )
    gif: GifOut | None = Field(None, description="The GIF made of the clip (urls.gif); null when none.")


def video_out(data: dict[str, Any] | None) -> VideoOut | None:
    if not data:
        return None
    try:
        return VideoOut.model_validate(data)
    except ValidationError:
        return None


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    stage: str
    stage_detail: str = Field("", description='Progress inside the stage, e.g. "12/25" denoising steps.')
    progress: float = Field(ge=0, le=1)
    queue_position: int | None = Field(None, description="1 = next to start; only while queued.")
    eta_s: float | None = Field(None, description="Seconds until the clip should be ready; None when final.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime
    motion: str | None = Field(
        description="A preset name or motion text; auto (the default) is planned from the photo."
    )
    plan: MotionPlanOut | None = Field(
        None,
        description="The motion planned from the photo at submit; None if it could not be planned.",
    )
    seed: int
    duration_s: float = Field(description="The clip's length as asked, in seconds (3-10).")
    resolution: Literal["hd", "4k"] = Field(description="The clip's size as asked.")
    animator: str
    photo: PhotoOut
    faces: list[ChosenFaceOut] | None = Field(
        None, description="The faces chosen to move; null: every movable face. The others keep still."
    )
    shared: bool = Field(False, description="Whether a share link is live (POST urls.share makes one).")
    video: VideoOut | None = Field(None, description="The clip as made, once the job succeeded.")
    clip_check: ClipCheckOut | None = Field(
        None,
        description="The clip check, once the job succeeded (or failed as clip_check_failed); "
        "`animator` stays as asked, `clip_check.rendered_by` names who made the clip.",
    )
    error: JobError | None
    urls: JobUrls


class JobList(BaseModel):
    jobs: list[JobOut]


class QuotaOut(BaseModel):
    limit: int
    used: int
    remaining: int
    resets_at: datetime | None = Field(None, description="When the oldest counted submission stops counting.")


class FaceOut(BaseModel):
    """A face the photo check found: the visitor picks faces by `index` (the form's `faces`)."""

    index: int = Field(description="The face's number, largest face first.")
    box: list[float] = Field(
        min_length=4, max_length=4, description="x, y, width, height as fractions of the photo's size."
    )
    movable: bool = Field(
        description="Whether the portrait animator can move it: at most 3 faces, each big enough to animate."
    )


class ChosenFaceOut(BaseModel):
    index: int = Field(description="The face's number in the photo check's `faces`.")
    box: list[float] = Field(min_length=4, max_length=4, description="x, y, width, height, fractions.")


class GifOut(BaseModel):
    width: int
    height: int
    fps: int
    colors: int = Field(description="Palette colours; fewer when a long clip had to shrink to fit.")
    bytes: int


class PhotoCheckOut(BaseModel):
    ok: bool = Field(description="False when a job with this photo would be refused (see problem).")
    photo: PhotoOut
    problem: ErrorBody | None = None
    plan: MotionPlanOut | None = Field(
        None,
        description="The motion a job with this photo would get, for the motion and seed sent (or auto).",
    )
    seed: int | None = Field(
        None, description="The seed the plan was made with: send it with the job to get this very plan."
    )
    resolutions: list[Literal["hd", "4k"]] = Field(
        ["hd"], description="The clip sizes this photo can have: 4k needs a short side of 1600 px or more."
    )
    faces: list[FaceOut] = Field(
        [],
        description="Every face found (up to 5), largest first; `quality.faces` is their count. Send the "
        "indices of those to animate as the job's `faces` (default: every movable one).",
    )
    rig: dict[str, Any] | None = Field(
        None,
        description=(
            "Only with ?rig=true: the photo's rig for the live view (format vivify-rig, version 2: a "
            "triangle mesh, each channel's per-vertex displacement and the numbers the browser draws it "
            "with, see docs/rig.md); null when the check is not ok or no face is found. Kept, by the "
            "photo's content, for the job's worker, until the retention period ends."
        ),
    )


class MotionPreset(BaseModel):
    name: str
    description: str


class CurvesRulesOut(BaseModel):
    """What a job's `motion_curves` may hold (models.motion_curves)."""

    fps: int = Field(description="Samples per second: sample i is frame i of the clip.")
    min_samples: int
    max_samples: int
    max_bytes: int = Field(description="The largest motion_curves field, in bytes (UTF-8 JSON).")
    channels: list[str] = Field(description="The channel names; a channel left out is 0 throughout.")
    limits: dict[str, tuple[float, float]] = Field(
        description="Each channel's range: yaw, pitch and roll in degrees, the others as fractions."
    )
    loop_samples: int = Field(
        description="At most this many last samples ease toward the first, so the clip loops."
    )


class MotionsOut(BaseModel):
    default: str | None = Field(description="The default motion: auto, planned from each photo's faces.")
    presets: list[MotionPreset]
    words: list[str] = Field(description="Words the motion text understands.")
    max_length: int
    curves: CurvesRulesOut = Field(description="The rules of recorded motion curves (motion_curves).")


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="database, storage, broker: 'ok' or what failed.")
    clip_guard: Literal["fallback", "fail", "off"] = Field(
        description="What a clip that fails the clip check leads to (VIVIFY_CLIP_GUARD); not a check."
    )


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time the app stores is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def job_out(job: Job, wait: Wait = NO_WAIT) -> JobOut:
    """The API's view of a job, with where it stands (app.core.waits); it runs no query."""
    status = JobStatus(job.status)
    base = f"{API}/jobs/{job.id}"
    done = status is JobStatus.SUCCEEDED
    error = None
    if status is JobStatus.FAILED:
        message = job.error_message or "The animation failed."
        error = JobError(code=job.error_code or "failed", message=message)
    return JobOut(
        id=job.id,
        status=status.value,
        stage=job.stage,
        stage_detail=job.stage_detail or "",
        progress=max(0.0, min(1.0, job.progress or 0.0)),
        queue_position=wait.queue_position,
        eta_s=wait.eta_s,
        created_at=as_utc(job.created_at),
        started_at=as_utc(job.started_at),
        finished_at=as_utc(job.finished_at),
        expires_at=as_utc(job.expires_at),
        motion=job.motion,
        plan=plan_out(job.motion_plan),
        seed=job.seed,
        duration_s=job.duration_s,
        resolution="4k" if job.resolution == "4k" else "hd",
        animator=job.animator,
        photo=PhotoOut(
            width=job.photo_width, height=job.photo_height, bytes=job.photo_bytes, quality=job.quality
        ),
        faces=[ChosenFaceOut.model_validate(f) for f in job.faces] if job.faces else None,
        shared=job.share_token is not None,
        video=video_out(job.video_info) if done else None,
        clip_check=clip_check_out(job.clip_check),
        error=error,
        urls=JobUrls(
            self=base,
            events=f"{base}/events",
            video=f"{base}/video" if done else None,
            poster=f"{base}/poster" if done else None,
            download=f"{base}/video?download=1" if done else None,
            gif=f"{base}/gif" if done and (job.video_info or {}).get("gif") else None,
            photo=f"{base}/photo",
            share=f"{base}/share",
            cancel=None if status.is_final else f"{base}/cancel",
            again=f"{base}/again",
        ),
    )


def job_view(session: Session, job: Job) -> JobOut:
    """job_out with the job's place in its queue: one statement while it is open, none once final."""
    return job_out(job, wait_of(session, job))


def job_views(session: Session, jobs: Sequence[Job]) -> list[JobOut]:
    """job_out for a list: one statement per queue among the open jobs, however long the list."""
    found = waits(session, jobs)
    return [job_out(job, found.get(job.id, NO_WAIT)) for job in jobs]
