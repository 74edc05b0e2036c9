"""Motion "auto" (the default): a motion planned for each photo from what its faces show.

Each face is read from its landmarks (head pose, gaze, eye openness, smile, open mouth, its share of the
frame, how many faces there are) and gets its own plan:

- a head turned to one side turns toward the viewer, a tilted head eases toward upright, a lowered or
  raised head levels a little, and eyes looking aside come to the camera;
- a neutral face or a slight smile smiles (more); a broad or open-mouthed smile is left as it is;
- a face already looking at the camera gets a small idle: head wander, blinks and breathing with
  amounts and timing of its own, and one small gesture (a glance, a nod, a tilt or a lift of the brows).

Every plan is reproducible from the seed and differs with the seed, the photo and the face. Explicit
presets and motion text are not planned: they do exactly what they say, for every face.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from models.face import Face, shared_analyzer
from models.motion import (
    AUTO,
    CHANNELS,
    PRESETS,
    Action,
    MotionError,
    MotionPlan,
    Move,
    SampledMotion,
    clip_rounds,
    parse_motion,
)

__all__ = [
    "AUTO",
    "FaceReading",
    "PlannedMotion",
    "Unreadable",
    "describe_actions",
    "is_auto",
    "plan_motion",
    "read_face",
]

_log = logging.getLogger(__name__)

BROAD_SMILE = 0.65  # Face.smile() at which a face is smiling broadly already and smiles no more
OPEN_MOUTH = 0.25  # Face.mouth_open() of a laugh or speech: no smile is added to it
MAX_READABLE_YAW = 60.0  # past this the mesh guesses the hidden half of the face
_CLEAR_DEG = 1.5  # a head move this large is an event of its own (it is named in the description)
_HEAD_ACTIONS = {"look": ("yaw", "pitch"), "turn": ("yaw", "pitch"), "nod": ("pitch",), "shake": ("yaw",),
                 "tilt": ("roll",), "brow": ("pitch",)}  # fmt: skip


@dataclass(frozen=True)
class PlannedMotion:
    name: str  # "auto", a preset name, or "custom" (motion text)
    description: str  # in words, e.g. "turns toward you, then smiles"
    peaks: dict[str, float]  # channel -> largest |value| over the clip, of the main (largest) face:
    # degrees for yaw/pitch/roll, 0-1 for the others
    intensity: float  # 0-1, overall motion strength (SVD's motion bucket scales from it)
    # One per face, largest face first (at least one); a recorded motion (models.motion_curves) is one
    # RecordedMotion that every face follows.
    plans: tuple[SampledMotion, ...]

    def to_json(self) -> dict[str, Any]:
        """For the API: plain, rounded numbers."""
        return {
            "name": self.name,
            "description": self.description,
            "peaks": {k: round(float(v), 2) for k, v in self.peaks.items()},
            "intensity": round(float(self.intensity), 2),
        }


@dataclass(frozen=True)
class FaceReading:
    """What one face shows, in the conventions of `MotionPlan` curves (the viewer's directions)."""

    yaw: float  # degrees, > 0 facing the picture's right
    pitch: float  # degrees, > 0 looking up
    roll: float  # degrees, > 0 eye line tilting down toward the picture's right
    gaze_x: float  # iris offset in half eye-widths, > 0 toward the picture's right
    gaze_y: float  # > 0 down
    eyes_open: float  # lid gap / eye width, both eyes averaged
    smile: float  # 0-1
    mouth_open: float  # inner-lip gap / mouth width
    share: float  # face height / picture height; 0 where the picture is unknown
    faces: int  # how many faces the photo has


class Unreadable(ValueError):
    """Landmarks that give no trustworthy reading; the message says why."""


def read_face(face: Face, frame_height: float | None = None, faces: int = 1) -> FaceReading:
    """Read one face's landmarks. Raises `Unreadable` for degenerate landmarks."""
    p = np.asarray(face.points, np.float64)
    if p.shape != (478, 3):
        raise Unreadable(f"expected 478 landmarks, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise Unreadable("some landmarks are not finite")
    if face.size < 12 or face.width < 12:
        raise Unreadable(f"the face is too small to read ({face.size:.0f} px tall, {face.width:.0f} px wide)")
    eye_span = float(np.linalg.norm(p[263, :2] - p[33, :2]))
    mouth = float(np.linalg.norm(p[291, :2] - p[61, :2]))
    if eye_span < 0.15 * face.width or mouth < 0.1 * face.width:
        raise Unreadable("degenerate landmarks: the eyes or the mouth have collapsed")
    with np.errstate(all="ignore"):
        yaw, pitch, roll = face.pose()
        gx, gy = face.gaze()
        eyes = float(np.mean(face.eye_openness()))
        values = (yaw, pitch, roll, gx, gy, eyes, face.smile(), face.mouth_open())
    if not np.isfinite(values).all():
        raise Unreadable("the measurements are not finite")
    if abs(yaw) > MAX_READABLE_YAW:
        raise Unreadable(f"the head is turned too far to read ({yaw:.0f}°)")
    share = face.size / frame_height if frame_height else 0.0
    yaw, pitch, roll, gx, gy, eyes, smile, mouth = (float(v) for v in values)
    return FaceReading(yaw, pitch, roll, gx, gy, eyes, smile, mouth, share=float(share), faces=int(faces))


def is_auto(motion: str | None) -> bool:
    """Whether the motion is planned from the photo: none given, or "auto" alone or with actions."""
    try:
        return parse_motion(motion if motion and motion.strip() else AUTO).name == AUTO
    except MotionError:  # words the parser does not know: auto if it names auto
        return re.search(rf"\b{AUTO}\b", motion or "", re.I) is not None


def plan_motion(
    image: Image.Image | np.ndarray | None,
    motion: str | None,
    seed: int | None,
    *,
    faces: Sequence[Face] | None = None,
    duration_s: float = 4.0,
    fps: float = 24.0,
) -> PlannedMotion:
    """motion None or "auto": planned from the faces (analysed from `image` unless `faces` is given).
    "auto, and nod" style text: the auto plan plus those actions. Any other preset or text: exactly that
    (parse_motion), for every face. Raises MotionError for text that is not understood."""
    seed = int(seed or 0)
    parsed = parse_motion(AUTO if motion is None or not motion.strip() else motion, seed)
    if parsed.name != AUTO:  # a preset or text: exactly that, for every face
        count = max(1, len(faces)) if faces is not None else 1
        description = _preset_description(parsed.name) if parsed.name in PRESETS else describe_actions(parsed)
        return _planned(parsed.name, description, (parsed,) * count, duration_s, fps)

    height: float | None = None
    if faces is None:
        faces, height = _analyse(image)
    elif image is not None:
        height = float(np.asarray(image).shape[0]) if isinstance(image, np.ndarray) else float(image.size[1])
    extra = parsed.actions
    if not faces:
        _log.info("motion auto: no face found, so the gentle idle plan")
        return _planned(AUTO, _with_extra(_IDLE, extra), (_fallback(seed, parsed),), duration_s, fps)

    plans: list[MotionPlan] = []
    phrases: list[tuple[float, str, bool]] = []
    for index, face in enumerate(faces):
        try:
            reading = read_face(face, height, len(faces))
        except Unreadable as e:
            _log.info("motion auto: face %d gets the gentle idle plan: %s", index + 1, e)
            plans.append(_fallback(seed, parsed))
            continue
        plan, face_phrases = _plan_face(reading, seed, index, parsed)
        plans.append(plan)
        if index == 0:
            phrases = face_phrases
    description = _with_extra(_compose(phrases) if plans[0].name == AUTO else _IDLE, extra)
    if len(plans) > 1:
        description += f"; each of the {len(plans)} faces in its own way"
    return _planned(AUTO, description, tuple(plans), duration_s, fps)


# --- planning one face ---------------------------------------------------------------------------------


def _plan_face(
    r: FaceReading, seed: int, index: int, parsed: MotionPlan
) -> tuple[MotionPlan, list[tuple[float, str, bool]]]:
    """One face's plan and the phrases that describe it: (start, words, whether it is a main event)."""
    rng = np.random.default_rng([seed % 2**32, index, *_signature(r)])
    extra_axes = {axis for a in parsed.actions for axis in _HEAD_ACTIONS.get(a.kind, ())}
    # A close-up shows every degree; a group stays calmer so the picture is not restless.
    calm = (0.85 if r.share > 0.5 else 1.0) * (0.9 if r.faces > 1 else 1.0)

    def budget(axis: str) -> float:  # text asking for a move on this axis takes half of its room
        return calm * (0.5 if axis in extra_axes else 1.0)

    moves: list[Move] = []
    phrases: list[tuple[float, str, bool]] = []
    # The head settles toward the viewer: one shared window, each axis eased a little differently.
    start, end = rng.uniform(0.08, 0.16), rng.uniform(0.78, 0.88)
    ramp = rng.uniform(0.16, 0.24)
    yaw = _toward(r.yaw, dead=2.0, width=4.0, gain=0.7, cap=12.0) * budget("yaw")
    pitch = _toward(r.pitch, dead=4.0, width=4.0, gain=0.5, cap=5.0) * budget("pitch")
    roll = _toward(r.roll, dead=2.0, width=3.0, gain=0.6, cap=6.0) * budget("roll")
    for axis, amount, words in (
        ("yaw", yaw, "turns toward you"),
        ("roll", roll, "straightens up"),
        ("pitch", pitch, "lifts the chin" if pitch > 0 else "lowers the chin"),
    ):
        if abs(amount) >= 0.5:
            lag = rng.uniform(0.0, 0.04)
            moves.append(Move(axis, amount, start + lag, end - lag, ramp * rng.uniform(0.9, 1.1)))
            if abs(amount) >= _CLEAR_DEG:
                phrases.append((start + lag, words, True))
    head_moves = bool(phrases)  # a clear settle; a trace of one leaves room for the idle gesture
    # Eyes looking aside (relative to the head) come to the camera, a little ahead of the head. Shut
    # eyes have no iris to read.
    seeing = r.eyes_open >= 0.1
    gaze_x = _toward(r.gaze_x, dead=0.08, width=0.12, gain=0.8, cap=0.5) if seeing else 0.0
    gaze_y = _toward(r.gaze_y, dead=0.1, width=0.12, gain=0.6, cap=0.3) if seeing else 0.0
    eyes_start = max(0.03, start - 0.04) if head_moves else rng.uniform(0.1, 0.25)
    for axis, amount in (("gaze_x", gaze_x), ("gaze_y", gaze_y)):
        if abs(amount) >= 0.05:
            moves.append(Move(axis, amount, eyes_start, end - 0.03, 0.6 * ramp))
    if max(abs(gaze_x), abs(gaze_y)) >= 0.15 and not head_moves:
        phrases.append((eyes_start, "looks at you", True))

    # A neutral face or a slight smile smiles (more); a broad or open-mouthed one already does.
    wants_smile = not any(a.kind == "smile" for a in parsed.actions)
    smile = 0.65 * _smoothstep((BROAD_SMILE - r.smile) / 0.2) * rng.uniform(0.9, 1.05)
    if wants_smile and r.mouth_open < OPEN_MOUTH and smile >= 0.1:
        s0 = start + rng.uniform(0.12, 0.22) if head_moves else rng.uniform(0.15, 0.3)
        moves.append(Move("smile", smile, s0, rng.uniform(0.8, 0.9), rng.uniform(0.15, 0.22)))
        phrases.append((s0, "smiles", True))

    wander = [calm * rng.uniform(1.8, 3.2), calm * rng.uniform(1.0, 2.0), calm * rng.uniform(0.6, 1.4)]
    wander.append(rng.uniform(0.06, 0.14))
    if head_moves:
        idle = 0.35  # the head is busy already: only a trace of wander
    else:
        idle = rng.uniform(0.6, 0.9)
        lean = next((m.peak for m in moves if m.channel == "roll"), 0.0)
        gesture, words = _gesture(rng, calm, skip_axes=extra_axes, lean=lean)
        moves.extend(gesture)
        phrases.append((gesture[0].start, words, False))
        for m in gesture:  # the wander on the gesture's own axis stays quiet, so it cannot hide it
            if m.channel in ("yaw", "pitch", "roll"):
                wander[("yaw", "pitch", "roll").index(m.channel)] *= 0.4
    blinks = rng.uniform(0.8, 1.3) if seeing else 0.0  # eyes shut already: no blinking
    plan = MotionPlan(
        name=AUTO,
        text=parsed.text,
        actions=parsed.actions,
        seed=int(rng.integers(2**31)),
        idle=idle * parsed.idle,  # "auto, calm" keeps the head stiller
        moves=tuple(moves),
        wander=(wander[0], wander[1], wander[2], wander[3]),
        blinks=blinks,
        limited=True,
    )
    return plan, phrases


def _gesture(
    rng: np.random.Generator, calm: float, skip_axes: set[str], lean: float = 0.0
) -> tuple[list[Move], str]:
    """One small gesture for an idle face, placed at a random time: a glance, a nod, a tilt or the brows.
    A tilt goes the way the head already eases (`lean`), never against it."""
    kinds = [k for k, axis in (("glance", "yaw"), ("nod", "pitch"), ("tilt", "roll"), ("brow", "pitch"))
             if axis not in skip_axes] or ["brow"]  # fmt: skip
    kind = kinds[int(rng.integers(len(kinds)))]
    side = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "tilt" and lean:
        side = float(np.sign(lean))
    start = rng.uniform(0.2, 0.45)
    span = rng.uniform(0.25, 0.4)
    if kind == "glance":  # the eyes go first and quicker, the head follows a little
        return [
            Move("gaze_x", side * rng.uniform(0.22, 0.35), start, start + span, 0.08),
            Move("yaw", side * calm * rng.uniform(1.5, 2.5), start + 0.03, start + span + 0.03, 0.12),
        ], "glances aside"
    if kind == "nod":
        return [Move("pitch", -calm * rng.uniform(2.5, 3.5), start, start + span * 0.7, span * 0.35)], (
            "nods a little"
        )
    if kind == "tilt":
        return [Move("roll", side * calm * rng.uniform(1.8, 2.6), start, start + span, 0.12)], (
            "tilts the head a little"
        )
    return [Move("brow", rng.uniform(0.25, 0.4), start, start + span * 0.8, span * 0.3)], (
        "raises the brows a little"
    )


def _toward(value: float, *, dead: float, width: float, gain: float, cap: float) -> float:
    """A move back toward 0 from `value`: none inside the dead zone, easing in over `width` past it, then
    `gain` of the way, at most `cap`. Continuous, so a slightly different reading plans a similar move."""
    size = abs(value)
    return -float(np.sign(value)) * min(cap, gain * size * _smoothstep((size - dead) / width))


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _signature(r: FaceReading) -> list[int]:
    """Coarse, mirror-blind whole numbers from the reading: they make the plan's randomness this photo's."""
    return [
        round(abs(r.yaw)),
        round(r.pitch + 90),
        round(abs(r.roll)),
        round(10 * r.smile),
        round(20 * r.mouth_open),
        round(20 * r.eyes_open),
        round(20 * r.share),
        r.faces,
    ]


def _fallback(seed: int, parsed: MotionPlan) -> MotionPlan:
    """The gentle idle (plus any actions the text asked for) for a face that could not be read."""
    if parsed.actions:
        return MotionPlan("custom", parsed.text, parsed.actions, seed=seed, idle=parsed.idle)
    return parse_motion("gentle", seed)


# --- words and numbers ---------------------------------------------------------------------------------

_IDLE = "a small, natural idle: blinks and breathing"


def _compose(phrases: list[tuple[float, str, bool]]) -> str:
    """Phrases in time order: near-simultaneous ones joined by "and", steps by ", then"."""
    if not any(main for _, _, main in phrases):
        extras = [words for _, words, _ in phrases]
        return f"a small, natural idle: {', '.join([*extras, 'blinks and breathing'])}"
    steps: list[tuple[float, list[str]]] = []
    for start, words, _ in sorted(phrases):
        if steps and start - steps[-1][0] < 0.06:
            steps[-1][1].append(words)
        else:
            steps.append((start, [words]))
    return ", then ".join(" and ".join(words) for _, words in steps)


def _with_extra(description: str, extra: tuple[Action, ...]) -> str:
    return f"{description}, and {_join(_action_words(extra))}" if extra else description


def _preset_description(name: str) -> str:
    return PRESETS[name].split(" (")[0]


def describe_actions(plan: MotionPlan) -> str:
    """Motion text's actions in words: "look left and smile" → "looks left and smiles"."""
    if not plan.actions:
        return "blinks and breathing, the head almost still" if plan.idle < 1 else _IDLE
    return _join(_action_words(plan.actions))


_VERBS = {"look": "looks", "turn": "turns", "nod": "nods", "shake": "shakes the head", "blink": "blinks",
          "smile": "smiles", "brow": "raises the eyebrows", "tilt": "tilts the head"}  # fmt: skip


def _action_words(actions: tuple[Action, ...]) -> list[str]:
    words = []
    for a in actions:
        parts = [_VERBS.get(a.kind, a.kind), a.direction or ""]
        parts.append("slowly" if a.speed < 1 else "quickly" if a.speed > 1 else "")
        parts.append("a little" if a.amount < 1 else "a lot" if a.amount > 1 else "")
        words.append(" ".join(p for p in parts if p))
    return words


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _planned(
    name: str, description: str, plans: tuple[MotionPlan, ...], duration_s: float, fps: float
) -> PlannedMotion:
    n = max(2, round(duration_s * fps))
    rounds = clip_rounds(n / fps)
    if rounds > 1 and (plans[0].actions or plans[0].moves):  # the events play again (models.motion)
        description = f"{description.rstrip('.')}; {'twice' if rounds == 2 else 'three times'} over"
    curves = plans[0].sample(n, fps)
    peaks = {k: float(np.abs(curves[k]).max()) for k in CHANNELS}
    head = max(peaks["yaw"] / 15.0, peaks["pitch"] / 10.0, peaks["roll"] / 8.0)
    face = max(peaks["smile"], peaks["brow"], peaks["gaze_x"] / 0.6, peaks["gaze_y"] / 0.4)
    intensity = float(np.clip(max(head, 0.7 * face), 0.0, 1.0))
    return PlannedMotion(name=name, description=description, peaks=peaks, intensity=intensity, plans=plans)


# --- faces for callers that pass only the image -----------------------------------------------------------


def _analyse(image: Image.Image | np.ndarray | None) -> tuple[list[Face], float | None]:
    """The image's faces (largest first) and its height; none where there is no image or no face reader."""
    if image is None:
        return [], None
    height = float(np.asarray(image).shape[0]) if isinstance(image, np.ndarray) else float(image.size[1])
    analyzer = shared_analyzer()  # the photo check's: one set of mediapipe graphs per process
    try:
        analyzer.setup()
    except ImportError as e:
        _log.warning("motion auto: no face reader (%s), so the gentle idle plan", e)
        return [], height
    return list(analyzer.analyze(image, mask=False).faces), height
