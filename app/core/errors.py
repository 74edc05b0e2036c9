"""Every error code a visitor or an API client can meet: in an API error body or in a failed job.

The codes are part of the API contract; the words shown for each live in the web tier's catalogue.
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
    # The photo.
    MISSING_PHOTO = "missing_photo"
    FILE_TOO_LARGE = "file_too_large"
    EMPTY_FILE = "empty_file"
    UNSUPPORTED_TYPE = "unsupported_type"
    UNREADABLE_IMAGE = "unreadable_image"
    TOO_MANY_PIXELS = "too_many_pixels"
    PHOTO_TOO_SMALL = "photo_too_small"
    NO_FACE = "no_face"
    FACE_TOO_SMALL = "face_too_small"
    PHOTO_GONE = "photo_gone"
    # The other fields and the visitor.
    CONSENT_REQUIRED = "consent_required"
    UNKNOWN_MOTION = "unknown_motion"
    INVALID_MOTION = "invalid_motion"
    INVALID_SEED = "invalid_seed"
    UNKNOWN_ANIMATOR = "unknown_animator"
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
