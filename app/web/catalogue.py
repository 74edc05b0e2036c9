"""Every word the pages say about jobs and errors, kept once for both renderers.

The Jinja pages read it through app.web.rendering; the browser reads the same data from a JSON island
that templates/base.html renders into every page, so static/js/words.js holds only formatting logic and
the two can never drift. Phrases with `{name}` placeholders are filled by `fill` here and in words.js.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Final

from markupsafe import Markup

from app.core.tables import FINAL_STATUSES
from models.quality import NO_FACE_NEXT, NO_FACE_TITLE

# Sorted so the embedded JSON (and so every page) is byte-for-byte stable.
FINAL: Final[tuple[str, ...]] = tuple(sorted(status.value for status in FINAL_STATUSES))

# What a job is doing, by the stage the worker reports (models.base.Stage).
STAGES: Final[dict[str, str]] = {
    "queued": "Waiting in line",
    "analyzing": "Reading the photo",
    "animating": "Animating",
    "decoding": "Developing the frames",
    "postprocessing": "Polishing the frames",
    "encoding": "Encoding the video",
    "checking": "Checking the likeness",
    "storing": "Saving your clip",
    "done": "Done",
}

STATUS: Final[dict[str, Any]] = {
    "final": list(FINAL),
    # The job view's heading.
    "titles": {
        "queued": "Your photo is in line",
        "running": "Bringing your photo to life",
        "succeeded": "Here it is",
        "failed": "We could not animate this photo",
        "canceled": "Canceled",
    },
    "default_title": "Your animation",
    # The short badge in "My animations"; a running job shows `running_label` with its percentage.
    "labels": {"queued": "In line", "succeeded": "Ready", "failed": "Failed", "canceled": "Canceled"},
    "running_label": "Animating · {percent}%",
    # The progress line once the job is final.
    "final_stage": {"succeeded": "Done", "canceled": "Canceled", "failed": "It did not work"},
}

PHRASES: Final[dict[str, str]] = {
    "default_motion": "Gentle life",  # jobs from before "auto", which carry no motion
    "planned_motion": "Planned motion: {description}",
    "clip_motion": "In this clip the person {description}.",  # a finished clip: what it did
    "lead": (
        "Choose a photo of a face. In about {duration} you get a short clip where the person blinks, "
        "breathes, smiles and turns their head a little."
    ),
    "starting": "Starting",  # picked up by a worker, before its first stage
    "working": "Working",  # a stage this catalogue does not know yet
    "stage_steps": "{stage} {steps}",
    "stage_percent": "{stage} — {percent}%",
    "next_in_line": "Next in line",
    "one_ahead": "{count} photo ahead of yours",
    "many_ahead": "{count} photos ahead of yours",
    "time_left": "about {duration} left",
    "expires": "Your photo and this clip are deleted automatically {when} (in {duration}).",
    "expiring": "Your photo and this clip are being deleted.",
    "quota_left_one": "You can animate {count} free photo today.",
    "quota_left_many": "You can animate {count} free photos today.",
    "quota_count": "{remaining} of {limit}",
    "quota_used": "You have used {count} free animations for today.",
    "quota_used_count": "all {limit}",
    "quota_more_at": "More {when}.",
    "quota_more_tomorrow": "More tomorrow.",
    "deleted_title": "Deleted.",
    "deleted_message": "Your photo and the clip are gone from our servers.",
    "delete_confirm": "Delete this clip and its photo now? This cannot be undone.",
    "delete_failed": "Not deleted: try again",
    # The live view (static/js/live.js): its status line, clock and buttons.
    "live_failed": "The live view could not start ({reason}). The motions below still work.",
    "live_recording": (
        "Recording. Move over the portrait and use the sliders; "
        "you can stop after 3 seconds, it stops by itself at {max}, the clip's length."
    ),
    "live_too_short": "That was under 3 seconds, so it was not kept. Record again.",
    "live_recorded": (
        "Recorded {seconds} seconds: “My recording” is now the chosen motion. Play it back, or record again."
    ),
    "live_playing": "Playing your recording, looped as the clip will be.",
    "live_stopped": "Stopped.",
    "live_time": "{seconds} s",
    "live_record": "Record",
    "live_record_again": "Record again",
    "live_stop_recording": "Stop recording",
    "live_play": "Play",
    "live_stop_playing": "Stop playing",
}

_JPEG_TIP = "Most phone and camera photos are JPEG; a screenshot of the photo works too."
_SMALLER = "Choose a smaller copy; a phone photo or a scan is fine."
_TRY_AGAIN = "Try again in a minute."
_RELOAD = "Reload the page and try again."
_MOTION = ("We did not understand the motion.", "Pick one of the motions, or use the listed words.")
_QUOTA = ("You have used today's free animations.", "Come back tomorrow to animate more photos.")
_GONE = ("This clip is no longer stored.", "Animate the photo again, or choose another photo.")
_FAILED = ("The animation failed on our side.", "Try again; if it keeps failing, try another photo.")
# A code the catalogue does not know (a newer server, an HTTP error from a proxy) reads like a 500.
_DEFAULT = (
    "Something went wrong on our side.",
    "Try again in a minute; if it keeps failing, try another photo.",
)

# (title, next step) per error code: every app.core.errors.ErrorCode (tests/app/test_catalogue.py checks),
# plus codes only the page meets (`canceled` for a canceled job, `offline` and `over_quota` from static/js).
_ERRORS: Final[dict[str, tuple[str, str]]] = {
    # The request itself.
    "bad_request": ("We could not read that request.", _RELOAD),
    "unauthorized": ("This needs a key we did not get.", _RELOAD),
    "forbidden": ("That is not allowed from here.", "Open Vivify in its own tab and try again."),
    "not_found": (
        "We can't find that animation.",
        "It may have been deleted or have expired, or it was made on another browser.",
    ),
    "method_not_allowed": ("We could not read that request.", _RELOAD),
    "not_acceptable": ("We could not read that request.", _RELOAD),
    "conflict": ("That changed while you were looking.", _RELOAD),
    "too_large": ("That photo is too large.", _SMALLER),
    "unsupported_media_type": ("That file is not a photo we can use.", _JPEG_TIP),
    "range_not_satisfiable": ("We could not send that part of the clip.", _RELOAD),
    "invalid_field": ("Something in the form was not right.", "Check the form, then try again."),
    "rate_limited": ("Too many requests in a short time.", "Wait a few seconds, then try again."),
    "malformed_form": ("The form did not arrive whole.", "Choose the photo again, then try again."),
    "too_many_fields": ("The form did not arrive whole.", _RELOAD),
    "field_too_large": ("Something in the form is too long.", "Use fewer words, then try again."),
    "invalid_idempotency_key": ("We could not read that request.", _RELOAD),
    "idempotency_key_reused": (
        "That request key was already used for another photo or other settings.",
        "Send a new Idempotency-Key for a new animation.",
    ),
    "request_timeout": ("The photo took too long to arrive.", "Check your connection, then try again."),
    "cross_site": ("That request came from another site.", "Open Vivify in its own tab and try again."),
    "error": ("We could not do that.", _RELOAD),
    # The photo.
    "missing_photo": ("Choose a photo first.", "Use “Choose a photo” at the top of the form."),
    "file_too_large": ("That photo is too large.", _SMALLER),
    "empty_file": ("That file is empty.", "Choose the photo again once it has finished downloading."),
    "unsupported_type": ("That file is not a photo we can use.", _JPEG_TIP),
    "unreadable_image": (
        "We could not read that photo.",
        "It may be damaged or incomplete: save it again, or choose another photo.",
    ),
    "too_many_pixels": ("That photo has too many pixels.", "Choose a smaller copy; a phone photo is fine."),
    "photo_too_small": ("That photo is too small.", "Choose a larger copy: 512 pixels or more looks best."),
    "no_face": (NO_FACE_TITLE, NO_FACE_NEXT),  # the words the API's message and the CLI use
    "photo_gone": (
        "The photo of this animation is no longer stored.",
        "Upload the photo again to animate it with another motion.",
    ),
    # The other fields and the visitor.
    "consent_required": (
        "Please confirm you have the right to animate this photo.",
        "Tick the box above the button, then try again.",
    ),
    "unknown_motion": _MOTION,
    "invalid_motion": _MOTION,
    "invalid_motion_curves": (
        "We could not use the recorded motion.",
        "Record the motion again, or pick one of the motions instead.",
    ),
    "invalid_seed": ("That seed is not a number we can use.", "Leave it empty, or use a whole number."),
    "invalid_duration": ("That clip length cannot be made.", "Choose from 3 to 10 seconds."),
    "invalid_resolution": ("That size is not offered.", "Choose HD or 4K."),
    "resolution_unavailable": (
        "This photo is too small for a 4K clip.",
        "Choose HD, or upload a larger copy of the photo (at least 1600 pixels on its short side).",
    ),
    "unknown_animator": ("That animator is not offered here.", "Leave it out to use the default."),
    "invalid_faces": ("We could not read which faces to animate.", "Tap the faces on the photo again."),
    "unknown_face": ("That face is not in this photo.", "Tap the faces on the photo to choose again."),
    "face_not_movable": (
        "That face cannot move.",
        "Only the three largest faces, each big enough, can be animated: choose among those.",
    ),
    "faces_unsupported": (
        "This animator moves every face.",
        "Leave every face on, or choose the portrait animator to keep some still.",
    ),
    "not_shared": (
        "This link does not work.",
        "It was turned off by the person who shared it, or the clip has expired.",
    ),
    "invalid_webhook": ("That webhook address was refused.", "Use a public https address, or leave it out."),
    "invalid_webhook_events": ("Those webhook events are not ones we send.", "Leave them out to get all."),
    "quota_exceeded": _QUOTA,
    "over_quota": _QUOTA,
    # The job's state.
    "already_final": ("This animation has already finished.", _RELOAD),
    "not_ready": ("The clip is not ready yet.", "Wait until the animation is done."),
    "gone": _GONE,
    "canceled": (
        "You canceled this animation.",
        "Choose a photo and a motion to start again whenever you like.",
    ),
    # Our side, or the way to it.
    "offline": ("We could not reach Vivify.", "Check your connection and try again."),
    "storage_unavailable": ("Our storage is busy right now.", _TRY_AGAIN),
    "database_unavailable": ("We are busy right now.", _TRY_AGAIN),
    "unavailable": ("We are busy right now.", _TRY_AGAIN),
    "server_busy": ("We are busy reading other photos right now.", _TRY_AGAIN),
    "internal": _DEFAULT,
    # A failed job.
    "timeout": ("This animation took too long and was stopped.", "Try again; a smaller photo is quicker."),
    "out_of_memory": ("This photo was too big to animate.", "Try again with a smaller copy of the photo."),
    "animator_unavailable": ("Animation is paused on our side.", _TRY_AGAIN),
    "photo_missing": (
        "The photo of this animation is no longer stored.",
        "Upload the photo again to animate it.",
    ),
    "photo_unreadable": ("We could not read the stored photo.", "Upload the photo again to animate it."),
    "bad_motion": _MOTION,
    "invalid_request": _MOTION,
    "internal_error": _FAILED,
    "worker_lost": ("The animation stopped halfway on our side.", "Try again; it usually works next time."),
    "clip_check_failed": (
        "The clip did not pass our quality check, so we did not keep it.",
        "Try another motion, or a sharp, evenly lit photo with the face towards the camera.",
    ),
    "failed": _FAILED,
}
ERRORS: Final[dict[str, dict[str, str]]] = {
    code: {"title": title, "next": next_step} for code, (title, next_step) in _ERRORS.items()
}
DEFAULT_ERROR: Final[dict[str, str]] = {"title": _DEFAULT[0], "next": _DEFAULT[1]}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill(template: str, **values: object) -> str:
    """`{name}` placeholders filled from `values`; words.js's `fill` does the same in the browser."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def catalogue() -> dict[str, Any]:
    """The whole catalogue as the JSON the page embeds for words.js."""
    return {
        "stages": STAGES,
        "status": STATUS,
        "phrases": PHRASES,
        "errors": ERRORS,
        "default_error": DEFAULT_ERROR,
    }


def script_json(data: Any) -> Markup:
    """`data` as JSON safe inside <script type="application/json">.

    `<`, `>`, `&` and `'` become \\u escapes (as Jinja's `tojson` does), so no phrase can close the
    script element or open a comment in it; JSON.parse turns them back into the same characters.
    """
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escape)
    return Markup(text)


@lru_cache(maxsize=1)
def catalogue_json() -> Markup:
    """The catalogue for the page's JSON island; built once, the words do not change while running."""
    return script_json(catalogue())
