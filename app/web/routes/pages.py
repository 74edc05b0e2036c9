"""The HTML pages: the upload page, a job page, and the plain-form fallbacks that work without JavaScript.

Without JavaScript the upload form posts here and is redirected (303) to /jobs/{id}, which refreshes
itself until the job is final; with it, static/js drives the API directly.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.core.errors import Conflict, NotFound, Refused
from app.core.tables import Job
from app.web.catalogue import PHRASES
from app.web.deps import (
    MetricsDep,
    ServiceDep,
    SessionDep,
    SettingsDep,
    VisitorDep,
    throttle,
)
from app.web.errors import EarlyResponse, rejected
from app.web.forms import PageFormDep, read_upload_form
from app.web.rendering import error_page, index_page, job_page_response, not_found_page, with_cookie

router = APIRouter(include_in_schema=False)


def page_job(
    job_id: str, request: Request, service: ServiceDep, settings: SettingsDep, visitor: VisitorDep
) -> Job:
    """The visitor's job, as the API's lookup finds it; otherwise the not-found page, never JSON."""
    try:
        return service.owned(job_id)
    except NotFound:
        raise EarlyResponse(not_found_page(request, settings, visitor)) from None


PageJobDep = Annotated[Job, Depends(page_job)]


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request, session: SessionDep, settings: SettingsDep, visitor: VisitorDep, deleted: int = 0
) -> Response:
    notice = None
    if deleted:
        notice = {
            "title": PHRASES["deleted_title"],
            "message": PHRASES["deleted_message"],
            "next": "",
            "ok": True,
        }
    return index_page(request, session, settings, visitor, error=notice)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    job: PageJobDep, request: Request, session: SessionDep, settings: SettingsDep, visitor: VisitorDep
) -> Response:
    return job_page_response(request, session, settings, visitor, job)


@router.post("/jobs/{job_id}/again")
async def again_form(
    form: PageFormDep,  # read before the job: no pooled connection waits on the client's body
    job: PageJobDep,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    service: ServiceDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
) -> Response:
    """ "Animate again" without JavaScript: the service call of POST /api/v1/jobs/{id}/again, then 303
    to the new job's page; a refusal re-renders this job's page with what to do next."""
    try:
        await throttle(request.app.state.rate_limiter, visitor)
        if isinstance(form, Refused):
            raise form
        text, preset, seed = form.get("motion_text"), form.get("motion"), form.get("seed")
        # A non-blank free-text motion wins over the preset radio, as on the upload form.
        motion = (text.strip() if isinstance(text, str) else "") or (
            preset if isinstance(preset, str) else None
        )
        length, size = form.get("duration_s"), form.get("resolution")
        new = await service.again(
            job,
            motion,
            seed if isinstance(seed, str) else None,
            length if isinstance(length, str) else None,
            size if isinstance(size, str) else None,
        )
    except Refused as exc:
        error = rejected(metrics, exc)
        session.rollback()
        return job_page_response(request, session, settings, visitor, job, again_error=error)
    return with_cookie(RedirectResponse(f"/jobs/{new.id}", status_code=303), settings, visitor)


@router.post("/jobs/{job_id}/cancel")
def cancel_form(job: PageJobDep, service: ServiceDep) -> Response:
    """Cancel without JavaScript: the API's cancel (and its webhook), then back to the job's page."""
    with contextlib.suppress(Conflict):  # it ended meanwhile: its page says how
        service.cancel(job)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/jobs/{job_id}/delete")
def delete_form(job: PageJobDep, service: ServiceDep) -> Response:
    service.delete(job)
    return RedirectResponse("/?deleted=1", status_code=303)


@router.post("/jobs")
async def create_form(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    service: ServiceDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
) -> Response:
    """The upload form without JavaScript: the service call of POST /api/v1/jobs, then 303 to the job
    page; a refusal re-renders the form with what to do next."""
    motion = None
    try:
        await throttle(request.app.state.rate_limiter, visitor)
        form = await read_upload_form(request, settings)
        motion = form.page_motion
        created = await service.create(form.job_request(motion))
    except Refused as exc:
        return error_page(request, session, settings, visitor, rejected(metrics, exc), motion)
    return with_cookie(RedirectResponse(f"/jobs/{created.job.id}", status_code=303), settings, visitor)
