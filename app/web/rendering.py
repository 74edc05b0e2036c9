"""Rendering the HTML pages: the template globals, content-hashed static URLs.

The pages render the same Job JSON the API answers with, and take their words from app.web.catalogue,
the same catalogue static/js/words.js reads from the page, so both say the same thing. The routes that
use this live in app/web/routes/pages.py.
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

from app.core.config import Settings
from app.core.queue import animate_queue
from app.core.schemas import API, JobOut, as_utc, job_view, job_views
from app.core.service import visitor_jobs
from app.core.tables import Job
from app.core.visitors import COOKIE_NAME, Visitor, allowance, cookie_kwargs, sign_visitor_id
from app.core.waits import run_estimate_s
from app.web.catalogue import DEFAULT_ERROR, ERRORS, FINAL, PHRASES, STAGES, STATUS, catalogue_json, fill
from app.web.deps import (
    SessionDep,
)
from app.web.errors import ApiError
from models.auto_motion import AUTO
from models.clip_shape import CLIP_DEFAULT_S, CLIP_MAX_S, CLIP_MIN_S, UHD_MIN_SHORT_SIDE
from models.motion import PRESETS, understood_words

ROOT = Path(__file__).resolve().parents[2]
templates = Jinja2Templates(directory=ROOT / "templates")

HISTORY_LIMIT = 12
_STEPS = re.compile(r"\d+/\d+")


def duration_text(seconds: float) -> str:
    s = max(1, round(seconds))
    if s < 60:
        return f"{s} s"
    m = round(s / 60)
    return f"{m} min" if m < 60 else f"{round(m / 6) / 10:g} h"


def stage_text(job: dict[str, Any]) -> str:
    status = job["status"]
    if status == "queued":
        return STAGES["queued"]
    if status in FINAL:
        return STATUS["final_stage"][status]
    if job["stage"] == "queued":
        return PHRASES["starting"]
    base = STAGES.get(job["stage"], PHRASES["working"])
    # A step count such as "12/25" reads well after the stage; other details are for logs, not people.
    detail = job.get("stage_detail") or ""
    if _STEPS.fullmatch(detail):
        return fill(PHRASES["stage_steps"], stage=base, steps=detail)
    return fill(PHRASES["stage_percent"], stage=base, percent=round(job["progress"] * 100))


def wait_text(job: dict[str, Any]) -> str:
    if job["status"] in FINAL:
        return ""
    parts = []
    position = job.get("queue_position")
    if job["status"] == "queued" and position:
        ahead = position - 1
        if ahead == 0:
            parts.append(PHRASES["next_in_line"])
        else:
            parts.append(fill(PHRASES["one_ahead" if ahead == 1 else "many_ahead"], count=ahead))
    if job.get("eta_s") is not None:
        parts.append(fill(PHRASES["time_left"], duration=duration_text(job["eta_s"])))
    return " · ".join(parts)


def job_title(job: dict[str, Any] | None) -> str:
    if not job:
        return STATUS["default_title"]
    return STATUS["titles"].get(job["status"], STATUS["default_title"])


def status_label(job: dict[str, Any]) -> str:
    if job["status"] == "running":
        return fill(STATUS["running_label"], percent=round(job["progress"] * 100))
    return STATUS["labels"].get(job["status"], job["status"])


def is_final(job: dict[str, Any] | None) -> bool:
    return job is not None and job["status"] in FINAL


def motion_label(motion: str | None) -> str:
    if not motion:
        return PHRASES["default_motion"]
    text = motion.replace("-", " ").replace("_", " ")
    return text[:1].upper() + text[1:]


def plan_text(plan: dict[str, Any] | None, status: str | None = None) -> str:
    """ "Planned motion: …" for a photo check's or an unfinished job's plan, what the clip did once it
    succeeded; empty without one. words.js's planText says the same."""
    description = (plan or {}).get("description")
    if not description:
        return ""
    return fill(
        PHRASES["clip_motion" if status == "succeeded" else "planned_motion"], description=description
    )


def _as_dt(value: Any) -> datetime:
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return as_utc(dt) or dt


def short_time(value: Any) -> str:
    return _as_dt(value).strftime("%d %b %H:%M UTC")


def expires_text(job: dict[str, Any]) -> str:
    expires = _as_dt(job["expires_at"])
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    if left <= 0:
        return PHRASES["expiring"]
    when = expires.strftime("on %d %b at %H:%M UTC")
    return fill(PHRASES["expires"], when=when, duration=duration_text(left))


def help_for(code: str | None, message: str = "") -> dict[str, str]:
    """What went wrong and what to do next; the server's own message only where it adds something."""
    words = ERRORS.get(code or "", DEFAULT_ERROR)
    title = words["title"]
    repeats = message in (title, f"{title} {words['next']}")  # no_face's message is its title and next step
    return {"title": title, "message": "" if repeats else message, "next": words["next"]}


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
    is_final=is_final,
    motion_label=motion_label,
    plan_text=plan_text,
    short_time=short_time,
    expires_text=expires_text,
    error_help=error_help,
    catalogue_json=catalogue_json,
)


# --- Rendering helpers --------------------------------------------------------------------------------


def _retention_text(settings: Settings) -> str:
    hours = settings.retention_hours
    return f"{hours:g} hours" if hours != 24 else "a day"


def _quota_text(remaining: int, limit: int, resets_at: datetime | None) -> str:
    if remaining > 0:
        count = fill(PHRASES["quota_count"], remaining=remaining, limit=limit)
        return fill(PHRASES["quota_left_one" if limit == 1 else "quota_left_many"], count=count)
    used = fill(PHRASES["quota_used"], count=fill(PHRASES["quota_used_count"], limit=limit))
    if resets_at:
        more = fill(PHRASES["quota_more_at"], when=_as_dt(resets_at).strftime("at %H:%M UTC"))
    else:
        more = PHRASES["quota_more_tomorrow"]
    return f"{used} {more}"


def _default_queue(settings: Settings) -> tuple[str, str]:
    """The queue and animator of a job sent from the page."""
    return animate_queue(settings), settings.animator


def _motions() -> list[dict[str, str]]:
    return [
        {"name": name, "title": motion_label(name), "description": description}
        for name, description in PRESETS.items()
    ]


def _job_dicts(session: SessionDep, visitor: Visitor, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    found = visitor_jobs(session, visitor.id, limit)
    return [_as_dict(view, job) for view, job in zip(job_views(session, found), found, strict=True)]


def _job_dict(session: SessionDep, job: Job) -> dict[str, Any]:
    return _as_dict(job_view(session, job), job)


def _as_dict(view: JobOut, job: Job) -> dict[str, Any]:
    data = view.model_dump(mode="json")
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
    error: dict[str, Any] | None = None,  # what went wrong, or a success such as "Deleted." (ok: True)
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    quota = allowance(session, settings, visitor)
    context = {
        "motions": _motions(),
        "default_motion": AUTO,
        "motion_words": understood_words(),
        "durations": list(range(math.ceil(CLIP_MIN_S), math.floor(CLIP_MAX_S) + 1)),
        "default_duration": round(CLIP_DEFAULT_S),
        "uhd_min_short_side": UHD_MIN_SHORT_SIDE,
        "quota": {"remaining": quota.remaining, "limit": quota.limit},
        "quota_text": _quota_text(quota.remaining, quota.limit, quota.resets_at),
        "lead": fill(
            PHRASES["lead"], duration=duration_text(run_estimate_s(session, *_default_queue(settings)))
        ),
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


def shared_page(request: Request, settings: Settings, job: Job | None) -> Response:
    """The page behind a share link: the clip, its caption and GIF, nothing else of the visitor, and no
    cookie set; 404 with the same page's words when the link is unknown, revoked or expired."""
    shared = None
    if job is not None:
        base = f"{API}/shared/{job.share_token}"
        info = job.video_info or {}
        shared = {
            "video": f"{base}/video",
            "poster": f"{base}/poster",
            "gif": f"{base}/gif" if info.get("gif") else None,
            "width": info.get("width"),
            "height": info.get("height"),
        }
    context = {"retention_text": _retention_text(settings), "shared": shared}
    response = templates.TemplateResponse(request, "shared.html", context, status_code=200 if shared else 404)
    response.headers["cache-control"] = "no-store"
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
