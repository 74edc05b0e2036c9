"""The photo of a new job: an upload read, normalised and rated, or another job's stored photo."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread

from app.core.config import Settings
from app.core.decode_budget import DecodeBudget, decode_budget
from app.core.errors import Conflict, ErrorCode, Invalid, Refused
from app.core.face_pool import face_pools
from app.core.schemas import as_utc
from app.core.service.fields import clean_motion, parse_duration, parse_seed
from app.core.service.plans import plan_json
from app.core.service.rigs import rig_json
from app.core.storage import ObjectStore
from app.core.tables import Job, utcnow
from app.core.uploads import PendingPhoto, Photo, finish_photo, inspect_photo
from models.clip_shape import CLIP_DEFAULT_S
from models.face import MOVABLE_MAX_FACES
from models.quality import NO_FACE_MESSAGE, check_photo_faces

log = logging.getLogger("vivify.service")

PHOTO_GONE = "The photo of this job is no longer stored; upload it again to animate it."


@dataclass(frozen=True)
class CheckedPhoto:
    photo: Photo
    size_bytes: int
    quality: dict[str, Any] | None
    faces: list[dict[str, Any]] = field(default_factory=list)  # models.quality.face_entries


def budget_of(settings: Settings) -> DecodeBudget:
    """The web process's decode allowance (app.core.decode_budget) for these settings."""
    return decode_budget(settings.decode_concurrency, settings.decode_memory_mb, settings.decode_wait_s)


def _inspect(data: bytes, settings: Settings) -> PendingPhoto:
    return inspect_photo(data, max_pixels=settings.max_pixels, min_side=settings.min_side_px)


def _rated(photo: Photo, movable_max: int = MOVABLE_MAX_FACES) -> CheckedPhoto:
    """The quality check works on the normalised photo (at most its stored size; it looks at ≤ 1024 px)."""
    report, faces = check_photo_faces(photo.image, movable_max)
    return CheckedPhoto(
        photo=photo, size_bytes=len(photo.jpeg), quality=_json_safe(report), faces=_json_safe(faces)
    )


def movable_max_of(settings: Settings) -> int:
    """How many faces the portrait animator moves at most, as it is configured."""
    return int(settings.animator_options.get("max_faces", MOVABLE_MAX_FACES))


async def analyse_upload(
    data: bytes, settings: Settings, run: Callable[..., Awaitable[Any]] | None = None
) -> CheckedPhoto:
    """Validate, normalise and rate an upload: the header is read and the photo decoded in worker
    threads, holding its share of the decode budget; the wait for that share keeps no thread busy. The
    faces are read by `run` (default: the analysis threads of app.core.face_pool)."""
    pending = await to_thread.run_sync(_inspect, data, settings)
    async with budget_of(settings).hold_async(pending.decode_bytes):
        photo = await to_thread.run_sync(finish_photo, pending, data)
    rated: CheckedPhoto = await (run or face_pools(settings).analyse)(_rated, photo, movable_max_of(settings))
    return rated


def _json_safe(value: Any) -> Any:
    """The quality report goes into a JSON column and the API: plain types only (numpy scalars out)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def photo_problem(checked: CheckedPhoto, settings: Settings, animator: str | None = None) -> Refused | None:
    """A reason to refuse the job although the photo itself is fine."""
    faces = (checked.quality or {}).get("faces")
    if (animator or settings.animator) == "portrait" and faces == 0:
        return Invalid(ErrorCode.NO_FACE, NO_FACE_MESSAGE)
    return None


@dataclass(frozen=True)
class PhotoCheck:
    checked: CheckedPhoto
    problem: Refused | None  # what would refuse a job made from it
    plan: dict[str, Any] | None  # the motion such a job would get (PlannedMotion.to_json)
    seed: int | None  # the seed the plan was made with
    rig: dict[str, Any] | None = None  # the live view's rig (MeshRig.to_json), when asked for and ok


async def check_photo(
    data: bytes,
    settings: Settings,
    motion: str | None = None,
    seed: str | None = None,
    *,
    duration_s: str | None = None,
    rig: bool = False,
    address: str = "",
    store: ObjectStore | None = None,
) -> PhotoCheck:
    """The pre-submit check: the photo's report, what would refuse a job made from it (the photo, or a
    motion, seed or clip length a job would refuse), and the motion it would get in a clip of that
    length. Raises when the photo itself is refused. With `rig`, also the live view's rig of the photo as
    it will be stored (when the check is ok and a face is found), at the portrait animator's render size,
    in a rig thread (app.core.face_pool) holding the decode budget's share for the photo it decodes
    again; `address` is the client's, for the cap on rig builds one address may have waiting. The rig is
    kept in `store` (or read from it when this photo's is there already) for the worker to render from."""
    pools = face_pools(settings)
    if not rig:
        return await _check(data, settings, motion, seed, duration_s, pools.analyse)
    # The whole check in a rig turn (bounded wait, capped per address), none of it in the analysis threads.
    async with pools.rig_lane(address) as run:
        return await _check(data, settings, motion, seed, duration_s, run, rig=True, store=store)


async def _check(
    data: bytes,
    settings: Settings,
    motion: str | None,
    seed: str | None,
    duration_s: str | None,
    run: Callable[..., Awaitable[Any]],
    rig: bool = False,
    store: ObjectStore | None = None,
) -> PhotoCheck:
    checked = await analyse_upload(data, settings, run)
    problem = photo_problem(checked, settings)
    if problem is not None:
        return PhotoCheck(checked, problem, plan=None, seed=None)
    try:
        chosen, chosen_seed = clean_motion(motion), parse_seed(seed)
        length = parse_duration(duration_s) or CLIP_DEFAULT_S
    except Invalid as exc:
        return PhotoCheck(checked, exc, plan=None, seed=None)
    plan = await run(plan_json, checked.photo.image, chosen, chosen_seed, length)
    built = None
    if rig:
        options = settings.animator_options
        max_side = int(options["max_side"]) if "max_side" in options else None
        max_faces = int(options["max_faces"]) if "max_faces" in options else None
        # The rig decodes the stored JPEG again and fits it to the render size: both copies count.
        nbytes = 2 * checked.photo.width * checked.photo.height * 3
        async with budget_of(settings).hold_async(nbytes):
            built = await run(rig_json, checked.photo.jpeg, max_side, store, max_faces)
    return PhotoCheck(checked, None, plan=plan, seed=chosen_seed, rig=built)


@dataclass(frozen=True)
class StoredPhoto:
    """Another job's photo, already checked and stored: create_job copies it, never decodes it again."""

    key: str
    width: int
    height: int
    size_bytes: int
    quality: dict[str, Any] | None


def stored_photo_of(job: Job, store: ObjectStore) -> StoredPhoto:
    """The job's photo for another animation, or Conflict photo_gone (expired or deleted meanwhile)."""
    key = job.photo_key
    if key is None or as_utc(job.expires_at) <= utcnow() or not store.exists(key):
        raise Conflict(ErrorCode.PHOTO_GONE, PHOTO_GONE)
    return StoredPhoto(
        key=key,
        width=job.photo_width,
        height=job.photo_height,
        size_bytes=job.photo_bytes,
        quality=job.quality,
    )


def store_photo(store: ObjectStore, key: str, photo: CheckedPhoto | StoredPhoto) -> None:
    if isinstance(photo, CheckedPhoto):
        store.put(key, photo.photo.jpeg, "image/jpeg")
        return
    try:  # a copy, not a shared key: deleting either job never breaks the other
        data = store.get(photo.key)
    except KeyError:
        raise Conflict(ErrorCode.PHOTO_GONE, PHOTO_GONE) from None
    store.put(key, data, "image/jpeg")


def remove_photo(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)  # no row points at it: don't leave an orphan photo behind
    except Exception:
        log.warning("could not remove the photo of an uncommitted job")
