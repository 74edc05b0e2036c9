"""Rendering the HTML pages: what they say, the template globals, content-hashed static URLs.

The pages render the same Job JSON the API answers with, so the server and static/js agree on what a
job looks like. The routes that use this live in app/web/routes/pages.py.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from app.core.config import Settings
from app.core.schemas import as_utc, job_out
from app.core.tables import Job
from app.core.visitors import COOKIE_NAME, Visitor, allowance, cookie_kwargs, sign_visitor_id
from app.web.deps import (
    SessionDep,
)
from app.web.errors import ApiError
from models.motion import PRESETS, understood_words

ROOT = Path(__file__).resolve().parents[2]
templates = Jinja2Templates(directory=ROOT / "templates")

FINAL = ("succeeded", "failed", "canceled")
HISTORY_LIMIT = 12
_STEPS = re.compile(r"\d+/\d+")


# --- What the page says. static/js/words.js says the same in the browser. -----------------------------

_STAGES = {
    "queued": "Waiting in line",
    "analyzing": "Reading the photo",
    "animating": "Animating",
    "decoding": "Developing the frames",
    "postprocessing": "Polishing the frames",
    "encoding": "Encoding the video",
    "storing": "Saving your clip",
    "done": "Done",
}

_JPEG_TIP = "Most phone and camera photos are JPEG; a screenshot of the photo works too."
_HELP = {
    "unsupported_type": ("That file is not a photo we can use.", _JPEG_TIP),
    "unsupported_media_type": ("That file is not a photo we can use.", _JPEG_TIP),
    "unreadable_image": (
        "We could not read that photo.",
        "It may be damaged or incomplete: save it again, or choose another photo.",
    ),
    "empty_file": ("That file is empty.", "Choose the photo again once it has finished downloading."),
    "missing_photo": ("Choose a photo first.", "Use “Choose a photo” at the top of the form."),
    "file_too_large": ("That photo is too large.", "Choose a smaller copy; a phone photo or a scan is fine."),
    "too_large": ("That photo is too large.", "Choose a smaller copy; a phone photo or a scan is fine."),
    "too_many_pixels": ("That photo has too many pixels.", "Choose a smaller copy; a phone photo is fine."),
    "photo_too_small": ("That photo is too small.", "Choose a larger copy: 512 pixels or more looks best."),
    "no_face": (
        "We could not find a face.",
        "Try a photo where the face is larger, well lit and looking towards the camera.",
    ),
    "face_too_small": (
        "The face is too small in this photo.",
        "Crop the photo around the face, or choose one taken closer.",
    ),
    "consent_required": (
        "Please confirm you have the right to animate this photo.",
        "Tick the box above the button, then try again.",
    ),
    "unknown_motion": (
        "We did not understand the motion.",
        "Pick one of the motions, or use the listed words.",
    ),
    "invalid_motion": (
        "We did not understand the motion.",
        "Pick one of the motions, or use the listed words.",
    ),
    "quota_exceeded": (
        "You have used today's free animations.",
        "Come back tomorrow to animate more photos.",
    ),
    "rate_limited": ("Too many requests in a short time.", "Wait a few seconds, then try again."),
    "canceled": (
        "You canceled this animation.",
        "Choose a photo and a motion to start again whenever you like.",
    ),
    "timeout": ("This animation took too long and was stopped.", "Try again; a smaller photo is quicker."),
    "storage_unavailable": ("Our storage is busy right now.", "Try again in a minute."),
    "photo_gone": (
        "The photo of this animation is no longer stored.",
        "Upload the photo again to animate it with another motion.",
    ),
    "invalid_seed": ("That seed is not a number we can use.", "Leave it empty, or use a whole number."),
}
_DEFAULT_HELP = (
    "Something went wrong on our side.",
    "Try again in a minute; if it keeps failing, try another photo.",
)


def duration_text(seconds: float) -> str:
    s = max(1, round(seconds))
    if s < 60:
        return f"{s} s"
    m = round(s / 60)
    return f"{m} min" if m < 60 else f"{round(m / 6) / 10:g} h"


def stage_text(job: dict[str, Any]) -> str:
    status = job["status"]
    if status == "queued":
        return _STAGES["queued"]
    if status in FINAL:
        return {"succeeded": "Done", "canceled": "Canceled", "failed": "It did not work"}[status]
    if job["stage"] == "queued":
        return "Starting"
    base = _STAGES.get(job["stage"], "Working")
    # A step count such as "12/25" reads well after the stage; other details are for logs, not people.
    detail = job.get("stage_detail") or ""
    return f"{base} {detail}" if _STEPS.fullmatch(detail) else f"{base} — {round(job['progress'] * 100)}%"


def wait_text(job: dict[str, Any]) -> str:
    if job["status"] in FINAL:
        return ""
    parts = []
    position = job.get("queue_position")
    if job["status"] == "queued" and position:
        ahead = position - 1
        parts.append(
            "Next in line" if ahead == 0 else f"{ahead} {'photo' if ahead == 1 else 'photos'} ahead of yours"
        )
    if job.get("eta_s") is not None:
        parts.append(f"about {duration_text(job['eta_s'])} left")
    return " · ".join(parts)


def job_title(job: dict[str, Any] | None) -> str:
    titles = {
        "queued": "Your photo is in line",
        "running": "Bringing your photo to life",
        "succeeded": "Here it is",
        "failed": "We could not animate this photo",
        "canceled": "Canceled",
    }
    return titles.get(job["status"], "Your animation") if job else "Your animation"


def status_label(job: dict[str, Any]) -> str:
    if job["status"] == "running":
        return f"Animating · {round(job['progress'] * 100)}%"
    labels = {"queued": "In line", "succeeded": "Ready", "failed": "Failed", "canceled": "Canceled"}
    return labels.get(job["status"], job["status"])


def motion_label(motion: str | None) -> str:
    if not motion:
        return "Gentle life"
    text = motion.replace("-", " ").replace("_", " ")
    return text[:1].upper() + text[1:]


def _as_dt(value: Any) -> datetime:
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return as_utc(dt) or dt


def short_time(value: Any) -> str:
    return _as_dt(value).strftime("%d %b %H:%M UTC")


def expires_text(job: dict[str, Any]) -> str:
    expires = _as_dt(job["expires_at"])
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    if left <= 0:
        return "Your photo and this clip are being deleted."
    when = expires.strftime("on %d %b at %H:%M UTC")
    return f"Your photo and this clip are deleted automatically {when} (in {duration_text(left)})."


def help_for(code: str | None, message: str = "") -> dict[str, str]:
    title, next_step = _HELP.get(code or "", _DEFAULT_HELP)
    return {"title": title, "message": message if message != title else "", "next": next_step}


def error_help(job: dict[str, Any]) -> dict[str, str] | None:
    if job["status"] == "canceled":
        return help_for("canceled")
    if job["status"] == "failed":
        err = job.get("error") or {}
        return help_for(err.get("code"), err.get("message") or "")
    return None


@lru_cache(maxsize=64)
def _static_version(path: str) -> str:
    try:
        return hashlib.sha256((ROOT / "static" / path).read_bytes()).hexdigest()[:10]
    except OSError:
        return "0"


def static_url(path: str) -> str:
    """/static/<path>?v=<content hash>: safe to cache for long, changes when the file does."""
    return f"/static/{path}?v={_static_version(path)}"


templates.env.globals.update(
    static=static_url,
    stage_text=stage_text,
    wait_text=wait_text,
    job_title=job_title,
    status_label=status_label,
    motion_label=motion_label,
    short_time=short_time,
    expires_text=expires_text,
    error_help=error_help,
)


# --- Rendering helpers --------------------------------------------------------------------------------


def _retention_text(settings: Settings) -> str:
    hours = settings.retention_hours
    return f"{hours:g} hours" if hours != 24 else "a day"


def _quota_text(remaining: int, limit: int, resets_at: datetime | None) -> str:
    if remaining > 0:
        noun = "photo" if limit == 1 else "photos"
        return f"You can animate {remaining} of {limit} free {noun} today."
    when = f" More at {_as_dt(resets_at).strftime('%H:%M UTC')}." if resets_at else " More tomorrow."
    return f"You have used all {limit} free animations for today.{when}"


def _motions() -> list[dict[str, str]]:
    return [
        {"name": name, "title": motion_label(name), "description": description}
        for name, description in PRESETS.items()
    ]


def _job_dicts(session: SessionDep, visitor: Visitor, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Job).where(Job.visitor_id == visitor.id).order_by(Job.created_at.desc()).limit(limit)
    ).all()
    return [_job_dict(session, job) for job in rows]


def _job_dict(session: SessionDep, job: Job) -> dict[str, Any]:
    data = job_out(session, job).model_dump(mode="json")
    data.setdefault("stage_detail", job.stage_detail or "")
    return data


def with_cookie(response: Response, settings: Settings, visitor: Visitor) -> Response:
    """Pages return their own Response, so the new-visitor cookie is set here, not by the dependency."""
    if visitor.is_new:
        response.set_cookie(COOKIE_NAME, sign_visitor_id(settings, visitor.id), **cookie_kwargs(settings))
    response.headers["cache-control"] = "no-store"
    return response


def _render(
    request: Request,
    name: str,
    settings: Settings,
    visitor: Visitor,
    context: dict[str, Any],
    status_code: int = 200,
) -> Response:
    base = {"retention_text": _retention_text(settings)}
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
    return with_cookie(response, settings, visitor)


def index_page(
    request: Request,
    session: SessionDep,
    settings: Settings,
    visitor: Visitor,
    *,
    error: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    quota = allowance(session, settings, visitor)
    context = {
        "motions": _motions(),
        "motion_words": understood_words(),
        "quota": {"remaining": quota.remaining, "limit": quota.limit},
        "quota_text": _quota_text(quota.remaining, quota.limit, quota.resets_at),
        "jobs": _job_dicts(session, visitor),
        "job": None,
        "error": error,
        "form": form or {},
        "max_upload_mb": math.floor(settings.max_upload_bytes / (1024 * 1024)),
    }
    return _render(request, "index.html", settings, visitor, context, status_code)


def not_found_page(request: Request, settings: Settings, visitor: Visitor) -> Response:
    return _render(request, "not_found.html", settings, visitor, {}, status_code=404)


def job_page_response(
    request: Request,
    session: SessionDep,
    settings: Settings,
    visitor: Visitor,
    job: Job,
    *,
    again_error: ApiError | None = None,
) -> Response:
    context = {
        "job": _job_dict(session, job),
        "jobs": _job_dicts(session, visitor),
        "motions": _motions(),
        "again_error": help_for(again_error.code, again_error.message) if again_error else None,
    }
    response = _render(
        request, "job.html", settings, visitor, context, again_error.status if again_error else 200
    )
    for key, value in (again_error.headers if again_error else {}).items():
        response.headers[key] = value
    return response


def error_page(
    request: Request,
    session: SessionDep,
    settings: Settings,
    visitor: Visitor,
    exc: ApiError,
    motion: str | None,
) -> Response:
    form = {"motion": motion} if motion in PRESETS else {"motion_text": motion or ""}
    response = index_page(
        request,
        session,
        settings,
        visitor,
        error=help_for(exc.code, exc.message),
        form=form,
        status_code=exc.status,
    )
    for key, value in exc.headers.items():
        response.headers[key] = value
    return response
