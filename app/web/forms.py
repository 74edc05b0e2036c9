"""Reading the upload form: the body is counted while it streams, fields are checked one by one.

FastAPI's Form/File parameters would spool the whole body to disk before any check runs, so the
upload endpoints read the multipart body themselves: a declared Content-Length over the limit is
refused before a byte is read, and a body that turns out larger is cut off as soon as it passes it.
Only the reading is here: the values are checked by the job service (app.core.service).
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message

from app.core.config import Settings
from app.core.errors import ErrorCode, Invalid, Malformed, Refused, TimedOut, TooLarge, Unsupported
from app.core.service import JobRequest
from app.web.deps import SettingsDep

# Boundaries, part headers and the text fields, recorded motion curves (up to 48 KiB) included.
FORM_OVERHEAD_BYTES = 128 * 1024
# A text field's bytes. Above the curves' own 48 KiB limit, so longer curves get their clear 422
# (invalid_motion_curves) rather than a bare "too long".
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 16
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
    motion_curves: str | None = None  # recorded curves (JSON), the live view's motion
    duration_s: str | None = None  # the clip's length in seconds, 3-10
    resolution: str | None = None  # hd or 4k
    faces: str | None = None  # the photo check's numbers of the faces to move, "0,2"

    @property
    def page_motion(self) -> str | None:
        """The page's choice: a non-blank free-text motion wins over the preset radio."""
        return (self.motion_text or "").strip() or self.motion

    def job_request(self, motion: str | None) -> JobRequest:
        """The values for the job service, with the motion the caller picked (`motion` or page_motion)."""
        return JobRequest(
            photo=self.photo,
            consent=self.consent,
            motion=motion,
            seed=self.seed,
            animator=self.animator,
            webhook=self.webhook,
            webhook_events=self.webhook_events_filter,
            motion_curves=self.motion_curves,
            duration_s=self.duration_s,
            resolution=self.resolution,
            faces=self.faces,
        )


def too_large(settings: Settings) -> TooLarge:
    mb = settings.max_upload_bytes / (1024 * 1024)
    return TooLarge(ErrorCode.FILE_TOO_LARGE, f"The photo is larger than the {mb:.0f} MB limit.")


def _first_text(form: FormData, name: str) -> str | None:
    values = form.getlist(name)
    if not values:
        return None
    value = values[0]
    if not isinstance(value, str):
        raise Invalid(ErrorCode.INVALID_FIELD, f"The field {name!r} must be text, not a file.")
    return value


def _all_text(form: FormData, name: str) -> str | None:
    values = form.getlist(name)
    if not values:
        return None
    texts = [v for v in values if isinstance(v, str)]
    if len(texts) != len(values):
        raise Invalid(ErrorCode.INVALID_FIELD, f"The field {name!r} must be text, not a file.")
    return ",".join(texts)


def refuse_foreign_charset(request: Request) -> None:
    """Form fields are read as UTF-8. A form that declares another charset is refused (415): Starlette
    would decode its fields with it, and a codec such as unicode_escape or utf-7 makes lone surrogates,
    text that no page or JSON can carry."""
    for param in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset":
            continue
        charset = value.strip().strip('"').lower()
        try:
            utf8 = codecs.lookup(charset).name == "utf-8"
        except LookupError:
            utf8 = False
        if not utf8:
            raise Unsupported(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Send the form as UTF-8 (or declare no charset)."
            )


SMALL_FORM_BYTES = 64 * 1024  # a form without a file: a motion, a seed, a few words


async def read_small_form(request: Request, settings: SettingsDep) -> FormData:
    """A form without files (animate again) read whole under the upload deadline and SMALL_FORM_BYTES,
    as UTF-8; or Malformed, TooLarge, TimedOut or Unsupported. Routes read it in a dependency declared
    before any that touches the database, so no pooled connection waits on a slow client."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > SMALL_FORM_BYTES):
        raise TooLarge(ErrorCode.TOO_LARGE, "The form is too large.")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise Unsupported(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Send the form as form data.")
    refuse_foreign_charset(request)
    form = await _within_deadline(request, settings, SMALL_FORM_BYTES, max_files=0)
    return form


async def small_form_or_refusal(request: Request, settings: SettingsDep) -> FormData | Refused:
    """read_small_form for a page, which answers a refusal with the page itself rather than JSON."""
    try:
        return await read_small_form(request, settings)
    except Refused as exc:
        return exc


SmallFormDep = Annotated[FormData, Depends(read_small_form)]
PageFormDep = Annotated[FormData | Refused, Depends(small_form_or_refusal)]


async def _within_deadline(request: Request, settings: Settings, limit: int, **parse: int) -> FormData:
    """The request's form, its body counted against `limit` bytes and read within the upload deadline."""
    received = 0

    async def counting_receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    limited = Request(request.scope, counting_receive)
    try:
        # One deadline for the whole body: a client trickling bytes cannot hold a request open for good.
        with anyio.move_on_after(settings.upload_timeout_s) as deadline:
            form = await limited.form(max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES, **parse)
        if deadline.cancelled_caught:
            raise TimedOut(
                ErrorCode.REQUEST_TIMEOUT,
                f"The upload did not arrive within {math.ceil(settings.upload_timeout_s)} seconds; "
                "check the connection and try again.",
            )
    except BodyTooLarge:
        raise TooLarge(ErrorCode.TOO_LARGE, "The form is too large.") from None
    except (HTTPException, MultiPartException) as exc:
        detail = str(getattr(exc, "detail", None) or getattr(exc, "message", "") or exc)
        if "maximum size" in detail:
            raise TooLarge(ErrorCode.FIELD_TOO_LARGE, "A form field is too long.") from None
        if "Too many" in detail:
            raise Invalid(ErrorCode.TOO_MANY_FIELDS, detail) from None
        raise Malformed(ErrorCode.MALFORMED_FORM, f"The form could not be read: {detail}") from None
    return form


async def read_upload_form(request: Request, settings: Settings) -> UploadForm:
    """Parse a multipart upload under the byte limit, or raise Malformed, TooLarge, Unsupported or
    Invalid."""
    body_limit = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Malformed(ErrorCode.BAD_REQUEST, "Invalid Content-Length header.")
        if int(declared) > body_limit:
            raise too_large(settings)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise Unsupported(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Send the photo as multipart/form-data.")
    refuse_foreign_charset(request)

    try:
        form = await _within_deadline(request, settings, body_limit, max_files=1)
    except TooLarge as exc:
        if exc.code is ErrorCode.FIELD_TOO_LARGE:
            raise
        raise too_large(settings) from None
    try:
        uploads = [v for v in form.getlist("photo") if isinstance(v, UploadFile)]
        if not uploads:
            raise Invalid(ErrorCode.MISSING_PHOTO, "Attach a photo in the field 'photo'.")
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
            motion_curves=_first_text(form, "motion_curves"),
            duration_s=_first_text(form, "duration_s"),
            resolution=_first_text(form, "resolution"),
            faces=_first_text(form, "faces"),
        )
    finally:
        await form.close()
