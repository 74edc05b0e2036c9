"""Every error code a visitor or an API client can meet (in an API error body or in a failed job), and
the domain errors that carry them.

The codes are part of the API contract; the words shown for each live in the web tier's catalogue.
The errors say what kind of refusal it is, never how it is answered: the web tier maps each kind to an
HTTP status in one place (app.web.errors), so core and the worker stay free of HTTP.
"""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    """str-valued, so a code compares equal to its text and serialises as it."""

    # The request itself (HTTP-level refusals).
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    INVALID_FIELD = "invalid_field"
    RATE_LIMITED = "rate_limited"
    MALFORMED_FORM = "malformed_form"
    TOO_MANY_FIELDS = "too_many_fields"
    FIELD_TOO_LARGE = "field_too_large"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    IDEMPOTENCY_MISMATCH = "idempotency_key_reused"  # the key came before with other fields
    CROSS_SITE = "cross_site"
    REQUEST_TIMEOUT = "request_timeout"  # the request body did not arrive in time
    ERROR = "error"  # an HTTP status no other code names
    # The photo.
    MISSING_PHOTO = "missing_photo"
    FILE_TOO_LARGE = "file_too_large"
    EMPTY_FILE = "empty_file"
    UNSUPPORTED_TYPE = "unsupported_type"
    UNREADABLE_IMAGE = "unreadable_image"
    TOO_MANY_PIXELS = "too_many_pixels"
    PHOTO_TOO_SMALL = "photo_too_small"
    NO_FACE = "no_face"
    PHOTO_GONE = "photo_gone"
    # The other fields and the visitor.
    CONSENT_REQUIRED = "consent_required"
    UNKNOWN_MOTION = "unknown_motion"
    INVALID_MOTION = "invalid_motion"
    INVALID_MOTION_CURVES = "invalid_motion_curves"  # recorded curves (motion_curves) that cannot be used
    INVALID_SEED = "invalid_seed"
    INVALID_DURATION = "invalid_duration"  # duration_s outside 3-10 s, or shorter than the recording
    INVALID_RESOLUTION = "invalid_resolution"  # not hd or 4k
    RESOLUTION_UNAVAILABLE = "resolution_unavailable"  # 4k for a photo without the pixels for it
    UNKNOWN_ANIMATOR = "unknown_animator"
    INVALID_FACES = "invalid_faces"  # `faces` is not a comma list of face numbers
    UNKNOWN_FACE = "unknown_face"  # a face number the photo check did not find
    FACE_NOT_MOVABLE = "face_not_movable"  # a face the portrait animator cannot move (too small, or past 3)
    FACES_UNSUPPORTED = "faces_unsupported"  # a subset of faces for an animator that moves the whole picture
    NOT_SHARED = "not_shared"  # a share link that is unknown, revoked or past its job's expiry
    INVALID_WEBHOOK = "invalid_webhook"
    INVALID_WEBHOOK_EVENTS = "invalid_webhook_events"
    QUOTA_EXCEEDED = "quota_exceeded"
    # The job's state.
    ALREADY_FINAL = "already_final"
    NOT_READY = "not_ready"
    GONE = "gone"
    # Our side.
    STORAGE_UNAVAILABLE = "storage_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    INTERNAL = "internal"  # a 500: nothing about the cause is told
    SERVER_BUSY = "server_busy"  # too many photos being read at once: try again in a few seconds
    # A failed job (job.error.code), set by the worker.
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    ANIMATOR_UNAVAILABLE = "animator_unavailable"
    PHOTO_MISSING = "photo_missing"
    PHOTO_UNREADABLE = "photo_unreadable"
    BAD_MOTION = "bad_motion"
    INVALID_REQUEST = "invalid_request"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"
    WORKER_LOST = "worker_lost"
    CLIP_CHECK_FAILED = "clip_check_failed"  # no clip passed the clip check (models.guard)
    FAILED = "failed"  # a failed job that carries no code of its own


class Refused(Exception):
    """The service will not (or cannot now) do what was asked. Raise one of the kinds below.

    `code` is the stable ErrorCode, `message` the words for people, `retry_after_s` when trying again
    makes sense (a limit that resets, a dependency that is down).
    """

    def __init__(self, code: ErrorCode, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r})"


class Malformed(Refused):
    """The request or the file cannot be read at all (a broken form, an empty or truncated image)."""


class Invalid(Refused):
    """A value was read but is not acceptable (no consent, an unknown motion, a photo too small)."""


class NotFound(Refused):
    """No such job, not the visitor's (the same answer, so ids cannot be probed), or its file is gone."""


class Conflict(Refused):
    """The job's state does not allow it: already final, not ready yet, its photo no longer stored."""


class TooLarge(Refused):
    """Over a size limit: the upload, a form field, the pixel count."""


class Unsupported(Refused):
    """A kind of content the service does not take (GIF, HEIC, not an image, not a form)."""


class Throttled(Refused):
    """A limit is spent: the daily allowance or the request rate. `retry_after_s` says when it resets."""


class TimedOut(Refused):
    """The request did not arrive in time (a body trickled slower than the upload deadline allows)."""


class Unavailable(Refused):
    """Something the service depends on cannot be reached right now (database, object store)."""
