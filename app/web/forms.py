"""Reading the upload form: the body is counted while it streams, fields are checked one by one.

FastAPI's Form/File parameters would spool the whole body to disk before any check runs, so the
upload endpoints read the multipart body themselves: a declared Content-Length over the limit is
refused before a byte is read, and a body that turns out larger is cut off as soon as it passes it.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message

from app.core.config import Settings
from app.web.errors import ApiError
from models.motion import MotionError, parse_motion

FORM_OVERHEAD_BYTES = 64 * 1024  # boundaries, part headers and the small text fields
MAX_FIELD_BYTES = 16 * 1024
MAX_FIELDS = 12
MAX_SEED = 2**31 - 1
MAX_MOTION_CHARS = 200
TRUE_WORDS = frozenset({"true", "on", "1", "yes"})  # "on" is what an HTML checkbox sends


class BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class UploadForm:
    photo: bytes
    consent: bool
    motion: str | None
    seed: str | None
    motion_text: str | None = None  # the page's free-text box; when not blank it wins over `motion`
    webhook: str | None = None
    webhook_events_filter: str | None = None  # "start,progress,completed" (repeated fields are joined)
    animator: str | None = None


def too_large(settings: Settings) -> ApiError:
    mb = settings.max_upload_bytes / (1024 * 1024)
    return ApiError(413, "file_too_large", f"The photo is larger than the {mb:.0f} MB limit.")


def _first_text(form, name: str) -> str | None:  # type: ignore[no-untyped-def]
    values = form.getlist(name)
    if not values:
        return None
    value = values[0]
    if not isinstance(value, str):
        raise ApiError(422, "invalid_field", f"The field {name!r} must be text, not a file.")
    return value


def _all_text(form, name: str) -> str | None:  # type: ignore[no-untyped-def]
    values = form.getlist(name)
    if not values:
        return None
    if not all(isinstance(v, str) for v in values):
        raise ApiError(422, "invalid_field", f"The field {name!r} must be text, not a file.")
    return ",".join(values)


async def read_upload_form(request: Request, settings: Settings) -> UploadForm:
    """Parse a multipart upload under the byte limit, or raise ApiError (400/413/415/422)."""
    body_limit = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "Invalid Content-Length header.")
        if int(declared) > body_limit:
            raise too_large(settings)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(415, "unsupported_media_type", "Send the photo as multipart/form-data.")

    received = 0

    async def counting_receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > body_limit:
                raise BodyTooLarge
        return message

    limited = Request(request.scope, counting_receive)
    try:
        form = await limited.form(max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    except BodyTooLarge:
        raise too_large(settings) from None
    except (HTTPException, MultiPartException) as exc:
        detail = str(getattr(exc, "detail", None) or getattr(exc, "message", "") or exc)
        if "maximum size" in detail:
            raise ApiError(413, "field_too_large", "A form field is too long.") from None
        if "Too many" in detail:
            raise ApiError(422, "too_many_fields", detail) from None
        raise ApiError(400, "malformed_form", f"The form could not be read: {detail}") from None
    try:
        uploads = [v for v in form.getlist("photo") if isinstance(v, UploadFile)]
        if not uploads:
            raise ApiError(422, "missing_photo", "Attach a photo in the field 'photo'.")
        data = await uploads[0].read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise too_large(settings)
        return UploadForm(
            photo=data,
            consent=(_first_text(form, "consent") or "").strip().lower() in TRUE_WORDS,
            motion=_first_text(form, "motion"),
            seed=_first_text(form, "seed"),
            motion_text=_first_text(form, "motion_text"),
            webhook=_first_text(form, "webhook"),
            webhook_events_filter=_all_text(form, "webhook_events_filter"),
            animator=_first_text(form, "animator"),
        )
    finally:
        await form.close()


def parse_seed(raw: str | None) -> int:
    """A seed from 0 to 2³¹-1; a random one when the field is missing or blank."""
    text = (raw or "").strip()
    if not text:
        return secrets.randbelow(MAX_SEED + 1)
    if not re.fullmatch(r"\d{1,10}", text) or int(text) > MAX_SEED:
        raise ApiError(422, "invalid_seed", f"The seed must be a whole number from 0 to {MAX_SEED}.")
    return int(text)


def clean_motion(raw: str | None) -> str | None:
    """Motion text checked by the animators' own parser, so an unknown word is a 422 now, not a
    failed job later. None means the default motion."""
    text = " ".join((raw or "").split())  # newlines and tabs from a textarea become spaces
    if not text:
        return None
    if len(text) > MAX_MOTION_CHARS:
        raise ApiError(422, "invalid_motion", f"The motion text is limited to {MAX_MOTION_CHARS} characters.")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise ApiError(422, "invalid_motion", "The motion text contains control characters.")
    try:
        parse_motion(text)
    except MotionError as exc:
        raise ApiError(422, "unknown_motion", str(exc)) from None
    return text
