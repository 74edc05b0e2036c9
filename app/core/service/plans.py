"""The motion a job will get, planned from its photo (models.auto_motion), for the visitor to read.

A plan is information, never a reason to refuse: planning that fails is logged, and the job (or the
photo check) goes on without one. Planning is CPU-bound (it looks at the faces): call these from a
worker thread.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image

from app.core.schemas import MotionPlanOut
from app.core.storage import ObjectStore
from models.auto_motion import is_auto, plan_motion
from models.clip_shape import CLIP_DEFAULT_S
from models.motion_curves import RecordedMotion, planned_motion

log = logging.getLogger("vivify.service")


def plan_json(
    image: Image.Image | None, motion: str | None, seed: int, duration_s: float = CLIP_DEFAULT_S
) -> dict[str, Any] | None:
    """The plan of a clip of `duration_s` as the job stores it (PlannedMotion.to_json), or None when
    planning failed."""
    try:
        plan = plan_motion(image, motion, seed, duration_s=duration_s).to_json()
        MotionPlanOut.model_validate(plan)  # what the API answers with: never store what it cannot read
    except Exception as exc:
        log.warning("motion not planned (%s)", type(exc).__name__, exc_info=True)
        return None
    return plan


def recorded_plan_json(curves: RecordedMotion) -> dict[str, Any] | None:
    """The plan of recorded curves (their words, peaks and intensity), as the job stores it, or None."""
    try:
        plan = planned_motion(curves).to_json()
        MotionPlanOut.model_validate(plan)
    except Exception as exc:
        log.warning("recorded motion not described (%s)", type(exc).__name__, exc_info=True)
        return None
    return plan


def plan_stored(
    store: ObjectStore, key: str, motion: str | None, seed: int, duration_s: float = CLIP_DEFAULT_S
) -> dict[str, Any] | None:
    """The plan for a stored photo (already normalised at upload: upright RGB), or None. Only "auto" looks
    at the photo: a preset or motion text is planned without reading it from the store."""
    if not is_auto(motion):
        return plan_json(None, motion, seed, duration_s)
    try:
        with Image.open(io.BytesIO(store.get(key))) as img:
            image = img.convert("RGB")
    except Exception as exc:
        log.warning("stored photo not read for a motion plan (%s)", type(exc).__name__)
        return None
    return plan_json(image, motion, seed, duration_s)
