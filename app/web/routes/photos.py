"""Help before submitting: check a photo without creating a job, and list what motion text understands."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.core.errors import Refused
from app.core.schemas import API, ErrorBody, MotionPreset, MotionsOut, PhotoCheckOut, PhotoOut, plan_out
from app.core.service import MAX_MOTION_CHARS, check_photo
from app.web.deps import MetricsDep, RateLimited, SettingsDep
from app.web.errors import rejected
from app.web.forms import read_upload_form
from app.web.routes.jobs import UPLOAD_BODY, _errors
from models.auto_motion import AUTO
from models.motion import PRESETS, understood_words

router = APIRouter(prefix=API, tags=["photos"])

PHOTO_ONLY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["photo"],
                    "properties": UPLOAD_BODY["requestBody"]["content"]["multipart/form-data"]["schema"][
                        "properties"
                    ],
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
        "Also the motion a job with this photo would get (`plan`), for the `motion` and `seed` sent "
        "(default: `auto`, planned from the photo's faces; a random seed, answered as `seed`). A motion "
        "or seed a job would refuse makes `ok` false, with the refusal as `problem`."
    ),
)
async def photo_check(request: Request, settings: SettingsDep, metrics: MetricsDep) -> PhotoCheckOut:
    try:
        form = await read_upload_form(request, settings)
        result = await check_photo(form.photo, settings, form.motion, form.seed)
    except Refused as exc:
        raise rejected(metrics, exc) from exc
    checked, problem = result.checked, result.problem
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
    )
