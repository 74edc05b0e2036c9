"""The HTML pages: the upload page, a job page, and the plain-form fallbacks that work without JavaScript.

Without JavaScript the upload form posts here and is redirected (303) to /jobs/{id}, which refreshes
itself until the job is final; with it, static/js drives the API directly.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.core import jobs
from app.web import submit
from app.web.deps import (
    JobMakerDep,
    MetricsDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    VisitorDep,
    rate_limited,
)
from app.web.errors import ApiError
from app.web.forms import read_upload_form
from app.web.rendering import error_page, index_page, job_page_response, not_found_page, with_cookie

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request, session: SessionDep, settings: SettingsDep, visitor: VisitorDep, deleted: int = 0
) -> Response:
    notice = None
    if deleted:
        notice = {
            "title": "Deleted.",
            "message": "Your photo and the clip are gone from our servers.",
            "next": "",
        }
    return index_page(request, session, settings, visitor, error=notice)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep, visitor: VisitorDep
) -> Response:
    job = jobs.get_job(session, job_id, visitor_id=visitor.id) if len(job_id) <= 64 else None
    if job is None:
        return not_found_page(request, settings, visitor)
    return job_page_response(request, session, settings, visitor, job)


@router.post("/jobs/{job_id}/again")
async def again_form(
    job_id: str,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    store: StoreDep,
    maker: JobMakerDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
) -> Response:
    """ "Animate again" without JavaScript: the checks and service calls of POST /api/v1/jobs/{id}/again,
    then 303 to the new job's page; a refusal re-renders this job's page with what to do next."""
    job = jobs.get_job(session, job_id, visitor_id=visitor.id) if len(job_id) <= 64 else None
    if job is None:
        return not_found_page(request, settings, visitor)
    try:
        rate_limited(request, visitor)
        form = await request.form(max_files=0, max_fields=8)
        text, preset = form.get("motion_text"), form.get("motion")
        # A non-blank free-text motion wins over the preset radio, as on the upload form.
        motion = (text.strip() if isinstance(text, str) else "") or (
            preset if isinstance(preset, str) else None
        )
        seed = form.get("seed")
        accepted = await submit.check_again(
            job,
            motion,
            seed if isinstance(seed, str) else None,
            session=session,
            settings=settings,
            store=store,
            visitor=visitor,
        )
        new = await maker.create(accepted)
    except ApiError as exc:
        metrics.uploads_rejected.labels(exc.code).inc()
        session.rollback()
        return job_page_response(request, session, settings, visitor, job, again_error=exc)
    return with_cookie(RedirectResponse(f"/jobs/{new.id}", status_code=303), settings, visitor)


@router.post("/jobs/{job_id}/cancel")
def cancel_form(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep, visitor: VisitorDep
) -> Response:
    job = jobs.get_job(session, job_id, visitor_id=visitor.id) if len(job_id) <= 64 else None
    if job is None:
        return not_found_page(request, settings, visitor)
    jobs.request_cancel(session, job)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/jobs/{job_id}/delete")
def delete_form(
    job_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    visitor: VisitorDep,
    store: StoreDep,
) -> Response:
    job = jobs.get_job(session, job_id, visitor_id=visitor.id) if len(job_id) <= 64 else None
    if job is None:
        return not_found_page(request, settings, visitor)
    jobs.delete_job(session, store, job)
    return RedirectResponse("/?deleted=1", status_code=303)


@router.post("/jobs")
async def create_form(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    maker: JobMakerDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
) -> Response:
    """The upload form without JavaScript: the same checks and service calls as POST /api/v1/jobs, then
    303 to the job page; a refusal re-renders the form with what to do next."""
    motion_field = None
    try:
        rate_limited(request, visitor)
        form = await read_upload_form(request, settings)
        # A non-blank free-text motion wins over the preset radio (see UploadForm.motion_text).
        motion_field = (form.motion_text or "").strip() or form.motion
        accepted = await submit.check_submission(
            form, motion_field, session=session, settings=settings, visitor=visitor
        )
    except ApiError as exc:
        metrics.uploads_rejected.labels(exc.code).inc()
        return error_page(request, session, settings, visitor, exc, motion_field)
    job = await maker.create(accepted)
    return with_cookie(RedirectResponse(f"/jobs/{job.id}", status_code=303), settings, visitor)
