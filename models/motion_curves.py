"""Recorded motion: the curves a visitor directed live in the browser, as a job's motion.

The live view (static/js) samples every channel once per frame at 24 fps while the visitor records, and
sends them with the job as `motion_curves`, a JSON string:

    {"fps": 24, "channels": {"yaw": [..], "smile": [..], ...}}

Channel names are models.motion.CHANNELS (a missing channel is 0 throughout); every list has the same
length n, 72 <= n <= 240 (3 to 10 s at 24 fps), sample i is frame i; numbers only, finite and within
CHANNEL_LIMITS; the field is at most 48 KiB. The worker renders exactly those samples, except that the
last few ease toward the first so the clip loops (`close_loop`, which the browser's playback mirrors).

Numpy only at import (like models/motion.py): the web tier checks curves at upload time to answer 422.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, overload

import numpy as np

from models.motion import CHANNEL_LIMITS, CHANNELS, HEAD_LIMITS

if TYPE_CHECKING:
    from models.auto_motion import PlannedMotion

__all__ = [
    "CURVES_FPS",
    "MAX_CURVES_BYTES",
    "MAX_SAMPLES",
    "MIN_SAMPLES",
    "RECORDED",
    "CurvesError",
    "RecordedMotion",
    "close_loop",
    "curves_rules",
    "parse_curves",
    "planned_motion",
]

RECORDED = "recorded"  # the job's motion when it carries recorded curves
CURVES_FPS = 24  # one sample per frame of the clip
MIN_SAMPLES, MAX_SAMPLES = 72, 240  # 3 to 10 s at 24 fps: up to the longest clip
# The JSON field, UTF-8: ten seconds of all nine channels at the live view's three decimals is ~17 KiB.
MAX_CURVES_BYTES = 48 * 1024
LOOP_SAMPLES = 12  # at most this many last samples ease back toward the first (close_loop)
EASE_BACK_SAMPLES = CURVES_FPS  # after a recording shorter than its clip: a second back to the first sample
_UNITS = {"yaw": "degrees", "pitch": "degrees", "roll": "degrees"}


class CurvesError(ValueError):
    """Recorded curves that cannot be used; the message names the channel and what is wrong."""


def curves_rules() -> dict[str, Any]:
    """The rules a client needs to record acceptable curves (GET /v1/motions answers them)."""
    return {
        "fps": CURVES_FPS,
        "min_samples": MIN_SAMPLES,
        "max_samples": MAX_SAMPLES,
        "max_bytes": MAX_CURVES_BYTES,
        "channels": list(CHANNELS),
        "limits": {k: [lo, hi] for k, (lo, hi) in CHANNEL_LIMITS.items()},
        "loop_samples": LOOP_SAMPLES,
    }


def _smoothstep(x: float) -> float:
    return x * x * (3.0 - 2.0 * x)


def _close(c: np.ndarray) -> np.ndarray:
    n = len(c)
    out = np.array(c, dtype=np.float64)
    span = min(LOOP_SAMPLES, n // 4)
    for i in range(n - span, n):
        w = _smoothstep((i - (n - span) + 1) / (span + 1))
        out[i] = out[i] + w * (out[0] - out[i])
    return out


@overload
def close_loop(curves: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, np.ndarray]: ...
@overload
def close_loop(curves: Sequence[float] | np.ndarray) -> np.ndarray: ...
def close_loop(
    curves: Mapping[str, Sequence[float] | np.ndarray] | Sequence[float] | np.ndarray,
) -> dict[str, np.ndarray] | np.ndarray:
    """Each curve with its last L = min(12, n // 4) samples eased toward its first, so the clip loops:
    for i in [n-L, n): w = smoothstep((i - (n - L) + 1) / (L + 1)), c'[i] = c[i] + w * (c[0] - c[i]),
    smoothstep(x) = x*x*(3 - 2*x). Samples before n-L are untouched. float64: a dict of arrays for a
    mapping of channels, one array for one curve (static/js/rig.js closeLoop is the same)."""
    if isinstance(curves, Mapping):
        return {name: _close(np.asarray(c, dtype=np.float64)) for name, c in curves.items()}
    return _close(np.asarray(curves, dtype=np.float64))


def _number(value: Any, channel: str, index: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = json.dumps(value)[:40] if _jsonable(value) else type(value).__name__
        raise CurvesError(f"Channel {channel!r}, sample {index}: {shown} is not a number.")
    lo, hi = CHANNEL_LIMITS[channel]
    unit = f" {_UNITS[channel]}" if channel in _UNITS else ""
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits: no float holds it, so it is out of range
        raise CurvesError(
            f"Channel {channel!r}, sample {index}: the number is out of range; "
            f"it must be from {lo:g} to {hi:g}{unit}."
        ) from None
    if not math.isfinite(number):
        raise CurvesError(f"Channel {channel!r}, sample {index}: the number is not finite.")
    if not lo <= number <= hi:
        raise CurvesError(
            f"Channel {channel!r}, sample {index}: {number:g} is out of range; "
            f"it must be from {lo:g} to {hi:g}{unit}."
        )
    return number


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _channels_of(data: Any) -> Any:
    """The `channels` of a motion_curves object whose other fields are right, or CurvesError."""
    if not isinstance(data, Mapping):
        raise CurvesError('The motion curves must be a JSON object: {"fps": 24, "channels": {...}}.')
    extra = sorted(str(k) for k in data if k not in ("fps", "channels"))
    if extra:
        raise CurvesError(f"Unknown field {extra[0]!r} in the motion curves; only fps and channels are read.")
    if "fps" in data:
        fps = data["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps != CURVES_FPS:
            shown = json.dumps(fps)[:40] if _jsonable(fps) else type(fps).__name__
            raise CurvesError(
                f"The motion curves' fps must be {CURVES_FPS} (the clip's frame rate), not {shown}."
            )
    return data.get("channels")


def _checked(channels: Any) -> dict[str, tuple[float, ...]]:
    """The channels, checked (names, lengths, numbers, ranges), or CurvesError naming what is wrong."""
    if not isinstance(channels, Mapping):
        raise CurvesError('The motion curves need "channels": an object of channel name to samples.')
    if not channels:
        raise CurvesError(f"The motion curves name no channel; use at least one of {', '.join(CHANNELS)}.")
    for name in channels:
        if name not in CHANNELS:
            raise CurvesError(f"Unknown channel {str(name)!r}; the channels are {', '.join(CHANNELS)}.")
    for name, samples in channels.items():
        if not isinstance(samples, (list, tuple)):
            raise CurvesError(f"Channel {name!r} must be a list of numbers.")
    lengths = {name: len(samples) for name, samples in channels.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise CurvesError(f"Every channel needs the same number of samples ({listed}).")
    n = next(iter(lengths.values()))
    if not MIN_SAMPLES <= n <= MAX_SAMPLES:
        names = ", ".join(str(k) for k in channels)
        raise CurvesError(
            f"The recorded channels ({names}) have {n} samples; {MIN_SAMPLES} to {MAX_SAMPLES} are needed "
            f"({MIN_SAMPLES // CURVES_FPS} to {MAX_SAMPLES // CURVES_FPS} s at {CURVES_FPS} fps)."
        )
    return {
        name: tuple(_number(v, name, i) for i, v in enumerate(samples))
        for name, samples in sorted(channels.items(), key=lambda item: CHANNELS.index(item[0]))
    }


def parse_curves(text: str | bytes) -> RecordedMotion:
    """The `motion_curves` field → a RecordedMotion, or CurvesError naming what is wrong."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_CURVES_BYTES:
        raise CurvesError(
            f"The motion curves are {len(raw)} bytes; at most {MAX_CURVES_BYTES} "
            f"({MAX_CURVES_BYTES // 1024} KiB) are accepted."
        )
    try:
        data = json.loads(raw)  # NaN and Infinity parse, and are refused by channel and sample below
    except (ValueError, RecursionError) as exc:
        raise CurvesError(f"The motion curves are not valid JSON ({exc}).") from None
    return RecordedMotion.from_json(data)


@dataclass(frozen=True)
class RecordedMotion:
    """Curves recorded in the live view: exactly these samples become the clip's frames (loop-closed).

    `curves` holds the channels that were sent (validated; others are 0). Every face follows the same
    curves: there is no per-face variant, no extra blink and no wander."""

    curves: Mapping[str, tuple[float, ...]]
    name: ClassVar[str] = RECORDED

    def __post_init__(self) -> None:
        object.__setattr__(self, "curves", _checked(self.curves))

    def __hash__(self) -> int:
        return hash(tuple(self.curves.items()))

    @property
    def samples(self) -> int:
        """n: the number of samples, one per frame at CURVES_FPS."""
        return len(next(iter(self.curves.values())))

    @property
    def duration_s(self) -> float:
        return self.samples / CURVES_FPS

    @property
    def face_still(self) -> bool:
        """Every channel that moves a face (all but breathing) is zero throughout: the visitor chose a
        still face."""
        return all(not any(v) for k, v in self.curves.items() if k != "breath")

    @classmethod
    def from_json(cls, data: Any) -> RecordedMotion:
        """From the parsed field (or the stored to_json()); CurvesError naming what is wrong."""
        return cls(_channels_of(data))

    def to_json(self) -> dict[str, Any]:
        """For storage: the samples as sent (before the loop is closed)."""
        return {"fps": CURVES_FPS, "channels": {k: list(v) for k, v in self.curves.items()}}

    def full(self) -> dict[str, np.ndarray]:
        """Every channel of CHANNELS (missing = 0) as recorded, float64."""
        sent, n = self.curves, self.samples
        return {k: np.asarray(sent[k], np.float64) if k in sent else np.zeros(n) for k in CHANNELS}

    def closed(self) -> dict[str, np.ndarray]:
        """Every channel of CHANNELS (missing = 0), loop-closed, float64, at the recorded samples."""
        return close_loop(self.full())

    def played_once(self, n: int) -> dict[str, np.ndarray]:
        """Every channel over a clip of n > samples frames: the recording as recorded, then an ease of up to
        a second (EASE_BACK_SAMPLES) back to its first sample, held to the end, so the clip loops. With
        fewer than LOOP_SAMPLES frames to spare, the last sample is held and the loop closed as close_loop
        does. float64."""
        count = self.samples
        tail = n - count
        if tail < 1:
            raise ValueError("played_once needs a clip longer than the recording")
        full = self.full()
        if tail < LOOP_SAMPLES:
            return close_loop({k: np.append(v, np.full(tail, v[-1])) for k, v in full.items()})
        ease = min(tail, EASE_BACK_SAMPLES)
        w = np.array([_smoothstep((j + 1) / ease) for j in range(ease)])
        out = {}
        for k, v in full.items():
            back = v[-1] + w * (v[0] - v[-1])
            out[k] = np.concatenate([v, back, np.full(tail - ease, v[0])])
        return out

    def sample(self, n: int, fps: float = CURVES_FPS, variant: int = 0) -> dict[str, np.ndarray]:
        """Per-frame curves for all CHANNELS, float32 of shape (n,): exactly the (loop-closed) samples when
        n at `fps` is the recording's own length; a clip longer than the recording plays it once and then
        eases back to its first sample (played_once); any other count is resampled linearly over the clip,
        periodically (frame n is frame 0). `variant` is accepted for the SampledMotion protocol and
        ignored: every face moves alike."""
        if n < 1 or fps <= 0:
            raise ValueError("need at least one frame and a positive fps")
        count = self.samples
        span = max(count, round(n * CURVES_FPS / fps))  # the clip's length in recorded samples
        curves = self.played_once(span) if span > count else self.closed()
        if n == span:
            return {k: v.astype(np.float32) for k, v in curves.items()}
        at = np.arange(n, dtype=np.float64) * span / n
        grid = np.arange(span + 1, dtype=np.float64)
        return {k: np.interp(at, grid, np.append(v, v[0])).astype(np.float32) for k, v in curves.items()}


# --- the recorded motion in words and numbers -----------------------------------------------------------

# (channel, sign, threshold, group, direction): an event is a stretch where sign*value passes the
# threshold. A recording is summarised by group (the head's turns, its tilts, the eyes, the smile...), in
# the order each group first happens, with its directions: "turns the head left and down, glances around,
# smiles and blinks twice", not every event in turn.
_EVENTS: tuple[tuple[str, float, float, str, str], ...] = (
    ("yaw", -1.0, 3.0, "turn", "left"),
    ("yaw", 1.0, 3.0, "turn", "right"),
    ("pitch", 1.0, 2.5, "turn", "up"),
    ("pitch", -1.0, 2.5, "turn", "down"),
    ("roll", 1.0, 2.5, "tilt", "right"),
    ("roll", -1.0, 2.5, "tilt", "left"),
    ("gaze_x", -1.0, 0.3, "glance", "left"),
    ("gaze_x", 1.0, 0.3, "glance", "right"),
    ("gaze_y", -1.0, 0.3, "glance", "up"),
    ("gaze_y", 1.0, 0.3, "glance", "down"),
    ("smile", 1.0, 0.25, "smile", ""),
    ("brow", 1.0, 0.25, "brow", ""),
)
# Each group's words: with one direction, with several ("{}" is the list), and with three or more.
_GROUP_WORDS: dict[str, tuple[str, str, str]] = {
    "turn": ("turns the head {}", "turns the head {}", "looks around"),
    "tilt": (
        "tilts the head to the {}",
        "tilts the head from side to side",
        "tilts the head from side to side",
    ),
    "glance": ("glances {}", "glances {}", "glances around"),
    "smile": ("smiles", "smiles", "smiles"),
    "brow": ("raises the brows", "raises the brows", "raises the brows"),
}
_DIRECTION_ORDER = ("left", "right", "up", "down")


def _starts(curve: np.ndarray, above: float) -> list[int]:
    """Where the curve rises past `above` (a stretch at the very start counts from 0)."""
    over = curve > above
    return [i for i in range(len(curve)) if over[i] and (i == 0 or not over[i - 1])]


def _count(k: int) -> str:
    return "" if k == 1 else " twice" if k == 2 else f" {k} times"


def _listed(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


_ONE_TURN = {
    "left": "turns toward the left",
    "right": "turns toward the right",
    "up": "looks up",
    "down": "looks down",
}
_TOGETHER = 6  # two moves starting within this many samples (a quarter second) are said with "and"


def _group_words(group: str, directions: set[str], times: int) -> str:
    one, several, many = _GROUP_WORDS[group]
    ordered = [d for d in _DIRECTION_ORDER if d in directions]
    if group == "turn" and len(ordered) == 1:
        return _ONE_TURN[ordered[0]]
    if len(ordered) >= 3:
        words = many
    else:
        words = (one if len(ordered) <= 1 else several).format(_listed(ordered) if ordered else "")
    # A smile or raised brows said with how often; turns and glances by where they go.
    return words + (_count(times) if group in ("smile", "brow") else "")


def describe_curves(curves: Mapping[str, np.ndarray]) -> str:
    """The recorded motion summarised in words, each kind of move once, in the order each first happens:
    "turns the head left and down, glances around, smiles twice and blinks"."""
    first: dict[str, int] = {}
    directions: dict[str, set[str]] = {}
    times: dict[str, int] = {}
    for channel, sign, threshold, group, direction in _EVENTS:
        starts = _starts(sign * curves[channel], threshold)
        if not starts:
            continue
        first[group] = min(first.get(group, starts[0]), starts[0])
        directions.setdefault(group, set()).add(direction)
        times[group] = times.get(group, 0) + len(starts)
    parts = [(at, _group_words(g, directions[g] - {""}, times[g])) for g, at in first.items()]
    blinks = _starts(curves["blink"], 0.5)
    if blinks:
        parts.append((blinks[0], f"blinks{_count(len(blinks))}"))
    if not parts:
        return "holds almost still" + (", breathing" if float(curves["breath"].max()) > 0.25 else "")
    parts.sort()
    said = [words for _, words in parts]
    if len(said) == 2 and parts[1][0] - parts[0][0] >= _TOGETHER:  # one move after the other
        return f"{said[0]}, then {said[1]}"
    if len(said) > 2 and any(" and " in words for words in said):  # "..., and smiles": lists stay apart
        return f"{', '.join(said[:-1])}, and {said[-1]}"
    return _listed(said)


def planned_motion(recorded: RecordedMotion) -> PlannedMotion:
    """The recorded motion as the job's plan: name "recorded", a description in words, each channel's
    peak, and an intensity 0..1 from the peaks relative to CHANNEL_LIMITS (head turns count fully, the
    face's smaller moves at 0.7; blinks and breathing not at all, as for an auto plan)."""
    from models.auto_motion import PlannedMotion  # lazily: it reads faces (PIL, mediapipe on demand)

    curves = recorded.closed()
    peaks = {k: float(np.abs(curves[k]).max()) for k in CHANNELS}

    def share(k: str) -> float:
        return peaks[k] / max(abs(v) for v in CHANNEL_LIMITS[k])

    head = max(share(k) for k in HEAD_LIMITS)
    face = max(share(k) for k in ("gaze_x", "gaze_y", "smile", "brow"))
    intensity = float(np.clip(max(head, 0.7 * face), 0.0, 1.0))
    return PlannedMotion(
        name=RECORDED,
        description=describe_curves(curves),
        peaks=peaks,
        intensity=intensity,
        plans=(recorded,),
    )
