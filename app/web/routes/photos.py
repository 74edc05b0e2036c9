"""Help before submitting: check a photo without creating a job, and list what motion text understands."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.core.errors import Refused
from app.core.schemas import (
    API,
    CurvesRulesOut,
    ErrorBody,
    FaceOut,
    MotionPreset,
    MotionsOut,
    PhotoCheckOut,
    PhotoOut,
    plan_out,
)
from app.core.service import MAX_MOTION_CHARS, check_photo
from app.web.deps import MetricsDep, RateLimited, SettingsDep, StoreDep, VisitorDep, throttle
from app.web.errors import rejected
from app.web.forms import read_upload_form
from app.web.routes.jobs import UPLOAD_BODY, _errors
from models.auto_motion import AUTO
from models.clip_shape import offered_resolutions
from models.motion import PRESETS, understood_words
from models.motion_curves import curves_rules

router = APIRouter(prefix=API, tags=["photos"])

PHOTO_ONLY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["photo"],
                    "properties": {
                        name: spec
                        for name, spec in UPLOAD_BODY["requestBody"]["content"]["multipart/form-data"][
                            "schema"
                        ]["properties"].items()
                        # A job's fields: the check plans text motions only, and answers `resolutions`.
                        if name not in ("motion_curves", "resolution", "faces")
                    },
                }
            }
        },
    }
}


@router.post(
    "/photo-check",
    response_model=PhotoCheckOut,
    dependencies=[RateLimited],
    openapi_extra=PHOTO_ONLY_BODY,
    responses=_errors(400, 403, 413, 415, 422, 429),
    summary="Size and quality report of a photo; creates no job and spends no allowance",
    description=(
        "Also the motion a job with this photo would get (`plan`), for the `motion`, `seed` and "
        "`duration_s` sent (default: `auto`, planned from the photo's faces; a random seed, answered as "
        "`seed`; 4 s), and the clip sizes it can have (`resolutions`: 4k for a short side of 1600 px or "
        "more). A motion, seed or length a job would refuse makes `ok` false, with the refusal as "
        "`problem`. "
        "With `?rig=true`, also `rig`: the photo's rig for the live view (null when not ok or no face); "
        "without it the answer has no `rig`. The rig is kept, by the photo's content, until the retention "
        "period ends or a job with this photo is deleted: the job's worker renders from it, and a second "
        "check of the same photo answers it without building it again."
    ),
    response_model_exclude_unset=True,
)
async def photo_check(
    request: Request,
    settings: SettingsDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
    store: StoreDep,
    rig: Annotated[bool, Query(description="Also answer the photo's rig for the live view.")] = False,
) -> PhotoCheckOut:
    try:
        if rig:  # ten times a plain check's work: a rate limit of its own (VIVIFY_RIG_RATE_LIMIT)
            await throttle(request.app.state.rig_rate_limiter, visitor, "live views asked for")
        form = await read_upload_form(request, settings)
        result = await check_photo(
            form.photo,
            settings,
            form.motion,
            form.seed,
            duration_s=form.duration_s,
            rig=rig,
            address=visitor.ip_hash,
            store=store,
        )
    except Refused as exc:
        raise rejected(metrics, exc) from exc
    checked, problem = result.checked, result.problem
    extra = {"rig": result.rig} if rig else {}
    return PhotoCheckOut(
        ok=problem is None,
        photo=PhotoOut(
            width=checked.photo.width,
            height=checked.photo.height,
            bytes=checked.size_bytes,
            quality=checked.quality,
        ),
        problem=ErrorBody(code=problem.code.value, message=problem.message) if problem else None,
        plan=plan_out(result.plan),
        seed=result.seed,
        resolutions=offered_resolutions((checked.photo.width, checked.photo.height)),
        faces=[FaceOut.model_validate(face) for face in checked.faces],
        **extra,
    )


@router.get(
    "/motions", response_model=MotionsOut, summary="Motion presets and the words motion text understands"
)
def motions() -> MotionsOut:
    return MotionsOut(
        default=AUTO,
        presets=[MotionPreset(name=name, description=desc) for name, desc in PRESETS.items()],
        words=understood_words(),
        max_length=MAX_MOTION_CHARS,
        curves=CurvesRulesOut.model_validate(curves_rules()),
    )
