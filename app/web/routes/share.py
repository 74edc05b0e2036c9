"""Share links: the owner makes or revokes one (/api/v1/jobs/{id}/share); whoever holds it sees the clip
on /s/{token}, and fetches its media by the token alone, with no cookie. Nothing else of the visitor (the
photo, the other jobs, the plan) is reachable through it, and search engines are told not to index it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from app.core.errors import NotFound
from app.core.schemas import API
from app.core.service import MediaKind, shared_job
from app.core.service.sharing import SHARED_KINDS
from app.core.storage import ObjectStore
from app.core.tables import Job
from app.web.deps import OwnedJobDep, RateLimited, ServiceDep, SessionDep, SettingsDep, StoreDep
from app.web.media import MediaFileResponse
from app.web.rendering import shared_page
from app.web.routes.jobs import MEDIA_RANGES, MEDIA_RESPONSES, Download, _errors, media_response

router = APIRouter(tags=["sharing"])

# Shared pages and their media: never indexed, never cached by a shared cache, no referrer sent onward.
PRIVATE_HEADERS = {
    "X-Robots-Tag": "noindex, nofollow, noarchive",
    "Referrer-Policy": "no-referrer",
}


class ShareOut(BaseModel):
    url: str = Field(description="The share link: read-only, until the job expires or the link is revoked.")


def share_url(request: Request, token: str) -> str:
    return str(request.base_url).rstrip("/") + f"/s/{token}"


@router.post(
    API + "/jobs/{job_id}/share",
    response_model=ShareOut,
    dependencies=[RateLimited],
    responses=_errors(403, 404, 409, 429),
    summary="Make a share link for a finished job (the same link if it has one)",
    description=(
        "The link shows the clip, its GIF and an AI-generated caption, and nothing else of the visitor. It "
        "is unguessable (256 random bits), read-only, ends when the job expires or is deleted, and is "
        "revoked by DELETE on this path. 409 not_ready before the job succeeded."
    ),
)
def share(job: OwnedJobDep, service: ServiceDep, request: Request) -> ShareOut:
    return ShareOut(url=share_url(request, service.share(job)))


@router.delete(
    API + "/jobs/{job_id}/share",
    status_code=204,
    dependencies=[RateLimited],
    responses=_errors(403, 404, 429),
    summary="Revoke the job's share link (every copy of it stops working)",
)
def unshare(job: OwnedJobDep, service: ServiceDep) -> Response:
    service.unshare(job)
    return Response(status_code=204)


def _shared(token: str, session: SessionDep) -> Job:
    return shared_job(session, token)


SharedJobDep = Annotated[Job, Depends(_shared)]


def _shared_media(
    job: Job, kind: MediaKind, store: ObjectStore, ttl_s: int, download: bool, head: bool = False
) -> RedirectResponse | MediaFileResponse:
    return media_response(job, kind, store, ttl_s, download=download, head=head, headers=PRIVATE_HEADERS)


def _media_route(kind: MediaKind) -> None:
    path = API + "/shared/{token}/" + kind

    def get(
        job: SharedJobDep, store: StoreDep, settings: SettingsDep, download: Download = False
    ) -> RedirectResponse | MediaFileResponse:
        return _shared_media(job, kind, store, settings.presigned_url_ttl_s, download)

    def head(
        job: SharedJobDep, store: StoreDep, settings: SettingsDep, download: Download = False
    ) -> RedirectResponse | MediaFileResponse:
        return _shared_media(job, kind, store, settings.presigned_url_ttl_s, download, head=True)

    what = {"video": "clip (MP4)", "poster": "poster (JPEG)", "gif": "clip as an animated GIF"}[kind]
    for method, fn, summary in (
        (router.get, get, f"The shared job's {what}, by the share token alone"),
        (router.head, head, f"The shared job's {what}: headers only"),
    ):
        fn.__name__ = f"{fn.__name__}_shared_{kind}"
        method(
            path,
            responses=MEDIA_RESPONSES,
            response_model=None,
            summary=summary,
            description="404 not_shared for an unknown, revoked or expired link. " + MEDIA_RANGES,
        )(fn)


for _kind in SHARED_KINDS:
    _media_route(_kind)


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
def shared_page_route(token: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    try:
        job = shared_job(session, token)
    except NotFound:
        response = shared_page(request, settings, None)
    else:
        response = shared_page(request, settings, job)
    response.headers.update(PRIVATE_HEADERS)
    return response
