"""The fields of a new job, checked: seed, clip length and size, motion, recorded motion curves,
Idempotency-Key, animator, webhook."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass

from app.core import webhooks
from app.core.config import Settings
from app.core.errors import ErrorCode, Invalid
from models.auto_motion import AUTO
from models.clip_shape import CLIP_MAX_S, CLIP_MIN_S, HD, RESOLUTIONS, UHD_MIN_SHORT_SIDE, offered_resolutions
from models.motion import MotionError, parse_motion
from models.motion_curves import RECORDED, CurvesError, RecordedMotion, parse_curves

IDEMPOTENCY_KEY_MAX = 128
MAX_SEED = 2**31 - 1
MAX_MOTION_CHARS = 200


def parse_seed(raw: str | None) -> int:
    """A seed from 0 to 2³¹-1; a random one when the field is missing or blank."""
    text = (raw or "").strip()
    if not text:
        return secrets.randbelow(MAX_SEED + 1)
    if not re.fullmatch(r"\d{1,10}", text) or int(text) > MAX_SEED:
        raise Invalid(ErrorCode.INVALID_SEED, f"The seed must be a whole number from 0 to {MAX_SEED}.")
    return int(text)


def parse_duration(raw: str | None) -> float | None:
    """The clip's length in seconds, CLIP_MIN_S to CLIP_MAX_S in tenths ("4", "7.5"); None when the field
    is missing or blank (the default, 4 s, or a recording's own length)."""
    text = (raw or "").strip()
    if not text:
        return None
    lo, hi = CLIP_MIN_S, CLIP_MAX_S
    if not re.fullmatch(r"\d{1,2}(\.\d)?", text) or not lo <= float(text) <= hi:
        raise Invalid(
            ErrorCode.INVALID_DURATION, f"The clip length (duration_s) must be from {lo:g} to {hi:g} seconds."
        )
    return float(text)


def parse_resolution(raw: str | None) -> str:
    """hd (the default) or 4k."""
    text = (raw or "").strip().lower()
    if not text:
        return HD
    if text not in RESOLUTIONS:
        offered = ", ".join(RESOLUTIONS)
        raise Invalid(ErrorCode.INVALID_RESOLUTION, f"The resolution must be one of: {offered}.")
    return text


def check_resolution(resolution: str, photo_size: tuple[int, int]) -> None:
    """Invalid resolution_unavailable for 4K of a photo without the pixels for it (models.clip_shape)."""
    if resolution not in offered_resolutions(photo_size):
        w, h = photo_size
        raise Invalid(
            ErrorCode.RESOLUTION_UNAVAILABLE,
            f"A 4K clip needs a photo of at least {UHD_MIN_SHORT_SIDE} pixels on its short side; this one is "
            f"{w}×{h}. Choose hd, or upload a larger copy.",
        )


def check_recording_fits(curves: RecordedMotion | None, duration_s: float | None) -> float | None:
    """The clip's length with a recording: its own when none was asked; a longer clip plays it once and
    eases back (models.motion_curves); a shorter one than the recording is refused."""
    if curves is None or duration_s is None:
        return duration_s if curves is None else round(curves.duration_s, 3)
    if curves.duration_s > duration_s + 1e-9:
        raise Invalid(
            ErrorCode.INVALID_DURATION,
            f"The recording is {curves.duration_s:g} s, longer than the {duration_s:g} s clip asked for: "
            "ask for a longer clip, or leave duration_s out to get the recording's own length.",
        )
    return duration_s


def clean_motion(raw: str | None) -> str:
    """Motion text checked by the animators' own parser, so an unknown word is refused now, not a
    failed job later. Blank means the default, "auto": a motion planned from the photo's faces."""
    text = " ".join((raw or "").split())  # newlines and tabs from a textarea become spaces
    if not text:
        return AUTO
    if len(text) > MAX_MOTION_CHARS:
        raise Invalid(
            ErrorCode.INVALID_MOTION, f"The motion text is limited to {MAX_MOTION_CHARS} characters."
        )
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise Invalid(ErrorCode.INVALID_MOTION, "The motion text contains control characters.")
    try:
        parse_motion(text)
    except MotionError as exc:
        raise Invalid(ErrorCode.UNKNOWN_MOTION, str(exc)) from None
    return text


def clean_curves(raw: str | None, motion: str | None) -> RecordedMotion | None:
    """The recorded motion (`motion_curves`, checked by models.motion_curves), or None when none was sent.
    With curves, the motion text must be blank or "recorded"; "recorded" needs curves."""
    asked = " ".join((motion or "").split()).lower()
    if not (raw or "").strip():
        if asked == RECORDED:
            raise Invalid(
                ErrorCode.INVALID_MOTION_CURVES,
                f'The motion "{RECORDED}" needs its curves: send them in the field motion_curves.',
            )
        return None
    if asked not in ("", RECORDED):
        raise Invalid(
            ErrorCode.INVALID_MOTION_CURVES,
            "Send either motion text or motion_curves, not both: with motion_curves, leave motion empty "
            f'or set it to "{RECORDED}".',
        )
    try:
        return parse_curves(raw or "")
    except CurvesError as exc:
        raise Invalid(ErrorCode.INVALID_MOTION_CURVES, str(exc)) from None


def clean_idempotency_key(raw: str | None) -> str | None:
    """The Idempotency-Key header: 1-128 visible ASCII characters (a UUID is typical)."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not all(33 <= ord(c) < 127 for c in key):
        raise Invalid(
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters.",
        )
    return key


def choose_animator(raw: str | None, settings: Settings) -> str:
    """The animator a job asks for (one the service offers), or the default."""
    name = (raw or "").strip()
    offered = settings.offered_animators
    if not name:
        return offered[0]
    if name not in offered:
        raise Invalid(ErrorCode.UNKNOWN_ANIMATOR, f"The animator must be one of: {', '.join(offered)}.")
    return name


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    events: list[str]


def check_webhook(url: str | None, events: str | None, settings: Settings) -> WebhookRequest | None:
    """The job's webhook, or Invalid. Resolves the host name (blocking: call from a worker thread)."""
    url = (url or "").strip()
    if not url:
        if (events or "").strip():
            raise Invalid(ErrorCode.INVALID_WEBHOOK, "webhook_events_filter needs a webhook URL.")
        return None
    try:
        chosen = webhooks.parse_events(events)
    except ValueError as exc:
        raise Invalid(ErrorCode.INVALID_WEBHOOK_EVENTS, str(exc)) from None
    try:
        webhooks.check_url(url, allow_private=settings.webhooks_allow_private)
    except webhooks.WebhookRefused as exc:
        raise Invalid(ErrorCode.INVALID_WEBHOOK, f"The webhook was refused: {exc}.") from None
    return WebhookRequest(url=url, events=chosen)
