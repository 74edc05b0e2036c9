"""The clip check: is the person in the clip still the person in the photo, steady, in the photo's
colours, and alive? Measured on the decoded MP4 (the pixels a visitor gets), never on what an animator
meant to draw, so a check of any animator, a plug-in's or a model's, can fail.

Measures (all per clip; per face where a face is involved):
- identity: dlib's face-descriptor distance between each face of the photo and the same face in
  sampled frames (models.identity; under 0.6 is the same person). The largest and the mean.
- kept: the share of sampled frames in which each face of the photo is still found.
- jitter: the landmarks' frame-to-frame acceleration |p[t+1] - 2 p[t] + p[t-1]|, mean over the 478
  landmarks, as a share of the face's height; the largest over runs of three consecutive frames. Smooth
  motion, however large, has almost none; a shaking or boiling face has a lot.
- flicker: the largest frame-to-frame change of the static background's mean lightness (CIELAB L*). The
  background is the photo's (its person mask), carried to the clip as the faces are.
- colour: the largest CIEDE2000 difference between the background's mean colour in a frame and in the
  photo.
- life: the largest face motion, as a share of face height: the 95th percentile of the landmarks'
  displacement from the first sampled frame (so a blink, which moves only the lids, counts). Without a
  face, the 95th percentile of optical flow as a share of the frame's height.
- seam: where the motion promises a loop, the mean L* difference between the last and first frames.

Sampling: runs of three consecutive frames spread from the first frame to the last (jitter needs them);
landmarks on each sampled frame (models.face, about 6 ms); descriptors, the expensive part (about 20 ms
a face on one core), only on the sampled frame where each face changed most and on the last one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image

from models.face import Box, Face, FaceAnalysis, FaceAnalyzer, shared_analyzer
from models.identity import SAME_PERSON, IdentityModel, distance, shared_identity
from models.video import frame_count, read_frames

# Limits a clip must keep (the guard's defaults; Settings can change each). JITTER_MAX and FLICKER_MAX are
# K_STEADY times the largest that bench/clip_check.py measured on the portrait animator's clips of the
# packaged portraits (bench/RESULTS.md). The warp never touches the background, so its flicker is nearly
# nil and K_STEADY times it would fail every model's clip: flicker is allowed one just-noticeable step of
# lightness (FLICKER_FLOOR) at least.
K_STEADY = 3.0
MEASURED_JITTER_MAX = 0.0095
MEASURED_FLICKER_MAX = 0.012
FLICKER_FLOOR = 1.0  # ΔL*
JITTER_MAX = K_STEADY * MEASURED_JITTER_MAX
FLICKER_MAX = max(K_STEADY * MEASURED_FLICKER_MAX, FLICKER_FLOOR)
FACE_LOST_MAX = 0.10
# Faces shorter than this in the clip are measured but not judged on likeness or jitter: a descriptor of
# a few dozen pixels, and landmarks a pixel apart, say more about the pixels than about the face.
MIN_JUDGED_FACE_PX = 64
LIFE_MIN = 0.006  # below: the faces did not move at all (a frozen clip measures about 0.002, a blink 0.016)

RUN = 3  # consecutive frames per run: acceleration needs three
# Sampled frames are read at most this long (an HD clip's own size): a 4K clip's are shrunk by ffmpeg as
# it hands them over, 56 MB for nine rather than 224. Every figure is a share of the face's size, and a
# face in a 4K portrait is still hundreds of pixels tall at this size.
CHECK_MAX_SIDE = 1920
_BACKGROUND = 0.1  # person probability under which a pixel is background
_SMALL_SIDE = 160  # flicker, colour and seam are measured on frames this long


@dataclass(frozen=True)
class CheckLimits:
    """What a clip must keep to pass."""

    identity: float = SAME_PERSON  # fails at or above, for any face
    face_lost: float = FACE_LOST_MAX  # fails when a face is missing from more than this share of frames
    jitter: float = JITTER_MAX
    flicker: float = FLICKER_MAX
    life: float = LIFE_MIN  # fails below, unless the clip is not meant to move a face


@dataclass(frozen=True)
class Promise:
    """What the animator promised of this clip (models.base.Frames says it)."""

    moves: bool = True  # False: exempt from life (a push-in; faces the visitor chose to keep still)
    loops: bool = False  # the last frame returns to the first: the seam is measured
    steady: bool = True  # False: jitter is reported, not judged (a visitor's recording, sample by sample)


@dataclass
class FaceFigures:
    index: int  # the face's place in the photo, largest first
    height_px: float  # the face's height in the clip (forehead to chin)
    identity_max: float | None  # None: never found where a descriptor was taken
    identity_mean: float | None
    kept: float  # share of sampled frames it was found in
    jitter: float | None  # None: no run of three frames found it
    life: float | None


@dataclass
class ClipCheck:
    """One clip's figures and verdict; `to_json` is what a job stores and the API answers."""

    passed: bool
    identity_distance: float | None  # the largest over faces and sampled frames; None without a face
    faces: list[FaceFigures]
    jitter: float | None
    flicker: float | None
    color_delta_e: float | None
    life: float | None
    seam: float | None
    seconds: float
    sampled_frames: int
    failures: list[str] = field(default_factory=list)  # what failed, in words
    rendered_by: str | None = None  # the animator whose clip this is (set by the guard)
    fallback: dict[str, Any] | None = None  # what the guard did and why (set by the guard)

    def to_json(self) -> dict[str, Any]:
        return _rounded(asdict(self))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


@dataclass
class PhotoReference:
    """What the check needs of the photo, analysed once per job (the guard's retries reuse it)."""

    width: int
    height: int
    faces: list[Face]  # largest first
    descriptors: list[np.ndarray]
    background_lab: np.ndarray | None  # mean L*a*b* of the background; None where there is none
    person: np.ndarray | None = None  # the photo's person mask at its small size (_small_mask), widened


class ClipChecker:
    """Measures clips against their photo. One per process: it holds the face and identity models."""

    def __init__(
        self,
        analyzer: FaceAnalyzer | None = None,
        identity: IdentityModel | None = None,
        *,
        runs: int = 3,
    ) -> None:
        self.analyzer = analyzer or shared_analyzer()
        self.identity = identity or shared_identity()
        self.runs = runs  # runs of three consecutive frames sampled per clip

    def setup(self) -> None:
        """Load the face and identity models (IdentityUnavailable if not installed) and run each once on a
        blank picture: a process's first check would otherwise pay for OpenCV's CIELAB tables and the
        graphs' first runs, about 0.1 s (bench/RESULTS.md)."""
        self.analyzer.setup()
        self.identity.setup()
        blank = np.full((64, 64, 3), 128, np.uint8)
        _small(blank)
        self.analyzer.face_near(blank, (16, 16, 48, 48))
        self.analyzer.person_mask(blank)

    def reference(self, photo: Image.Image, analysis: FaceAnalysis | None = None) -> PhotoReference:
        """What the check needs of the photo. `analysis`: the animator's own reading of this photo (at
        any size: its faces and mask are scaled to the photo's), reused rather than made again."""
        rgb = np.asarray(photo.convert("RGB"))
        h, w = rgb.shape[:2]
        if analysis is not None and (analysis.width, analysis.height) != (w, h):
            sx, sy = w / analysis.width, h / analysis.height
            faces = [f.scaled(sx) for f in analysis.faces]
            # Reused only when it is the photo, resized (not stretched to another shape).
            analysis = FaceAnalysis(faces, analysis.mask, w, h) if abs(sx - sy) <= 0.01 * sx else None
        if analysis is None or analysis.mask is None:
            analysis = self.analyzer.analyze(rgb, mask=True)
        faces = analysis.faces[: self.analyzer.max_faces]  # as many as its own reading would find
        person = _small_mask(analysis.mask, rgb.shape)
        return PhotoReference(
            width=rgb.shape[1],
            height=rgb.shape[0],
            faces=faces,
            descriptors=self.identity.describe(rgb, faces),
            background_lab=_background_lab(_small(rgb), person < _BACKGROUND),
            person=person,
        )

    def check(
        self,
        photo: Image.Image | PhotoReference,
        mp4: bytes,
        *,
        frames: int | None = None,
        promise: Promise = Promise(),
        limits: CheckLimits = CheckLimits(),
        progress: Callable[[float], None] | None = None,
    ) -> ClipCheck:
        """Measure one clip of `frames` frames (None: counted here) and judge it. `progress(fraction)` is
        called between steps (a cancel raised there stops the check)."""
        t0 = time.perf_counter()
        step = progress or (lambda fraction: None)
        ref = photo if isinstance(photo, PhotoReference) else self.reference(photo)
        count = frames if frames is not None else frame_count(mp4)
        sampled = sample_frames(count, self.runs)
        step(0.2)
        decoded = dict(zip(sampled, read_frames(mp4, sampled, max_side=CHECK_MAX_SIDE), strict=True))
        step(0.4)
        figures = self._measure(ref, decoded, promise, step)
        check = ClipCheck(passed=True, seconds=0.0, sampled_frames=len(sampled), **figures)
        check.failures = judge(check, limits, promise, has_faces=bool(ref.faces))
        check.passed = not check.failures
        check.seconds = time.perf_counter() - t0
        step(1.0)
        return check

    # ---- measuring ---------------------------------------------------------------------------------------
    def _measure(
        self,
        ref: PhotoReference,
        frames: dict[int, np.ndarray],
        promise: Promise,
        step: Callable[[float], None],
    ) -> dict[str, Any]:
        sampled = sorted(frames)
        first = frames[sampled[0]]
        small = {k: _small(f) for k, f in frames.items()}
        scale, shift = _photo_to_clip(ref, first, self.analyzer)
        # The background is where the photo's own reading puts it, carried to the clip (it moves nowhere
        # in a good clip); the clip's pixels there are what is measured.
        if ref.person is not None:
            background = _background_in_clip(ref.person, (ref.width, ref.height), scale, shift, first.shape)
        else:
            background = _small_mask(self.analyzer.person_mask(first), first.shape) < _BACKGROUND
        flicker, colour = _background_figures(small, background, ref.background_lab)
        seam = _seam(small[sampled[0]], small[sampled[-1]]) if promise.loops else None

        tracks = [self._follow(_mapped(face.box, scale, shift), frames) for face in ref.faces]
        step(0.7)
        faces: list[FaceFigures] = []
        wanted: dict[int, list[int]] = {}  # frame → the faces to describe there
        for i, (face, found) in enumerate(zip(ref.faces, tracks, strict=True)):
            height = max(face.size * scale, 1.0)
            moved = _displacements(found, height)
            for index in _identity_frames(moved, found, loops=promise.loops):
                wanted.setdefault(index, []).append(i)
            faces.append(
                FaceFigures(
                    index=i,
                    height_px=height,
                    identity_max=None,
                    identity_mean=None,
                    kept=len(found) / len(sampled),
                    jitter=_jitter(found, height),
                    life=max(moved.values()) if moved else None,
                )
            )
        distances: list[list[float]] = [[] for _ in ref.faces]
        for index, which in sorted(wanted.items()):
            descriptors = self.identity.describe(frames[index], [tracks[i][index] for i in which])
            for i, d in zip(which, descriptors, strict=True):
                distances[i].append(distance(ref.descriptors[i], d))
        for figures, found_d in zip(faces, distances, strict=True):
            if found_d:
                figures.identity_max, figures.identity_mean = max(found_d), float(np.mean(found_d))
        identity = [f.identity_max for f in faces if f.identity_max is not None]
        jitter = [f.jitter for f in faces if f.jitter is not None]
        life = [f.life for f in faces if f.life is not None] if ref.faces else [_flow_life(small)]
        return {
            "identity_distance": max(identity) if identity else None,
            "faces": faces,
            "jitter": max(jitter) if jitter else None,
            "flicker": flicker,
            "color_delta_e": colour,
            "life": max(life) if life else None,
            "seam": seam,
        }

    def _follow(self, box: Box, frames: dict[int, np.ndarray]) -> dict[int, Face]:
        """One face through the sampled frames, starting where the photo puts it. The landmark model looks
        in a square that stays put until the face has moved a fifth of its size away, so a clip that does
        not move gets the very same landmarks on every frame (its jitter and life are zero)."""
        found: dict[int, Face] = {}
        for index in sorted(frames):
            face = self.analyzer.face_near(frames[index], box)
            if face is None or not _same_place(face.box, box):
                continue
            found[index] = face
            size = max(box[2] - box[0], box[3] - box[1])
            if np.linalg.norm(_centre(face.box) - _centre(box)) > 0.2 * size:
                box = face.box
        return found


def _identity_frames(moved: dict[int, float], found: dict[int, Face], *, loops: bool) -> list[int]:
    """Where to take one face's descriptors (about 20 ms each): the sampled frame where it changed most;
    unless the clip promises to end where it began, also the last frame it was found in (where a model's
    drift has gone furthest), or the middle one when that is the frame that changed most."""
    if not found:
        return []
    most = max(moved, key=lambda k: moved[k])
    if loops:
        return [most]
    order = sorted(found)
    return list(dict.fromkeys([most, order[-1], order[len(order) // 2]]))[:2]


def judge(check: ClipCheck, limits: CheckLimits, promise: Promise, *, has_faces: bool) -> list[str]:
    """What failed, in words; empty when the clip passes."""
    failures: list[str] = []
    judged = [f for f in check.faces if f.height_px >= MIN_JUDGED_FACE_PX]
    for f in check.faces:
        large_enough = f.height_px >= MIN_JUDGED_FACE_PX
        if large_enough and f.identity_max is not None and f.identity_max >= limits.identity:
            failures.append(
                f"identity: face {f.index + 1} is {f.identity_max:.2f} from the photo "
                f"(the same person is under {limits.identity:g})"
            )
        if 1.0 - f.kept > limits.face_lost:
            failures.append(
                f"face kept: face {f.index + 1} is missing from {1 - f.kept:.0%} of sampled frames "
                f"(at most {limits.face_lost:.0%})"
            )
    jitter = max((f.jitter for f in judged if f.jitter is not None), default=None)
    if promise.steady and jitter is not None and jitter > limits.jitter:
        failures.append(f"steadiness: landmark jitter {jitter:.4f} (at most {limits.jitter:.4f})")
    if check.flicker is not None and check.flicker > limits.flicker:
        failures.append(f"steadiness: background flicker {check.flicker:.2f} L* (at most {limits.flicker:g})")
    if promise.moves and check.life is not None and check.life < limits.life:
        failures.append(f"life: nothing moved ({check.life:.4f} of face height, at least {limits.life:g})")
    if promise.moves and check.life is None and has_faces:
        failures.append("life: the faces were never found, so no motion could be seen")
    return failures


def sample_frames(count: int, runs: int) -> list[int]:
    """Runs of RUN consecutive frames, the first starting at frame 0 and the last ending at the last frame."""
    if count <= RUN:
        return list(range(count))
    starts = np.linspace(0, count - RUN, max(1, min(runs, count // RUN))).round().astype(int)
    return sorted({int(s) + k for s in starts for k in range(RUN)})


# ---- geometry and faces ----------------------------------------------------------------------------
def _photo_to_clip(
    ref: PhotoReference, first: np.ndarray, analyzer: FaceAnalyzer
) -> tuple[float, np.ndarray]:
    """Scale and shift that take the photo's pixels to the clip's. A clip of the photo's shape is the
    photo resized; otherwise (a model's crop or pad around the face) the largest face of both decides,
    and without one the photo is taken to cover the clip, centred."""
    h, w = first.shape[:2]
    if abs(w / h - ref.width / ref.height) < 0.01:
        return w / ref.width, np.zeros(2)
    if ref.faces:
        found = analyzer.analyze(first, mask=False).faces
        if found:
            scale = found[0].size / max(ref.faces[0].size, 1.0)
            return scale, _centre(found[0].box) - scale * _centre(ref.faces[0].box)
    scale = max(w / ref.width, h / ref.height)
    return scale, (np.array([w, h]) - scale * np.array([ref.width, ref.height])) / 2


def _centre(box: Box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _mapped(box: Box, scale: float, shift: np.ndarray) -> Box:
    x0, y0, x1, y1 = box
    return (x0 * scale + shift[0], y0 * scale + shift[1], x1 * scale + shift[0], y1 * scale + shift[1])


def _same_place(found: Box, expected: Box) -> bool:
    """The face found near `expected` is that face, not a neighbour or a face-like blot: its centre within
    half a face and its size within a factor of 1.6."""
    size = max(expected[2] - expected[0], expected[3] - expected[1], 1.0)
    other = max(found[2] - found[0], found[3] - found[1], 1.0)
    near = float(np.linalg.norm(_centre(found) - _centre(expected))) < 0.5 * size
    return near and 1 / 1.6 < other / size < 1.6


def _displacements(found: dict[int, Face], height: float) -> dict[int, float]:
    """Per sampled frame: the 95th percentile of the landmarks' distance from the first frame found."""
    if not found:
        return {}
    order = sorted(found)
    base = found[order[0]].points[:, :2]
    return {
        k: float(np.percentile(np.linalg.norm(found[k].points[:, :2] - base, axis=1), 95)) / height
        for k in order
    }


def _jitter(found: dict[int, Face], height: float) -> float | None:
    """The largest mean landmark acceleration over runs of three consecutive frames, per face height."""
    values = []
    for k in found:
        if k in found and k + 1 in found and k + 2 in found:
            p0, p1, p2 = (found[k + j].points[:, :2].astype(np.float64) for j in range(RUN))
            values.append(float(np.linalg.norm(p2 - 2 * p1 + p0, axis=1).mean()) / height)
    return max(values) if values else None


# ---- the background and the whole frame -------------------------------------------------------------
def _small_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) of a frame scaled to at most _SMALL_SIDE long."""
    h, w = shape[:2]
    scale = min(1.0, _SMALL_SIDE / max(h, w))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _small(rgb: np.ndarray) -> np.ndarray:
    """The frame at most _SMALL_SIDE long, in CIELAB (L* 0–100): halved by 2×2 means (OpenCV's fast
    exact-half path) while still twice that long, then an area average to the size (a mean colour is a
    mean colour either way; one area resize at an odd factor took twice as long)."""
    size = _small_size(rgb.shape)
    small = rgb
    while max(small.shape[:2]) >= 4 * _SMALL_SIDE:
        small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
    small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _background_in_clip(
    person: np.ndarray, photo_size: tuple[int, int], scale: float, shift: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """The background of a photo of `photo_size` (its widened small person mask under _BACKGROUND) at the
    clip's small size, moved as _photo_to_clip says. Whatever the photo does not cover (a model's
    outpainted border) is not counted as background."""
    w, h = _small_size(shape)
    pw, ph = person.shape[1], person.shape[0]
    to_photo = (pw / photo_size[0], ph / photo_size[1])
    to_clip = (w / shape[1], h / shape[0])
    m = np.array(
        [
            [scale * to_clip[0] / to_photo[0], 0.0, shift[0] * to_clip[0]],
            [0.0, scale * to_clip[1] / to_photo[1], shift[1] * to_clip[1]],
        ],
        np.float64,
    )
    moved = cv2.warpAffine(person, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(1.0,))
    return moved < _BACKGROUND


def _small_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The person mask at the small frames' size, widened by two pixels so edges count as the person."""
    size = _small_size(shape)
    if mask is None:
        return np.zeros(size[::-1], np.float32)
    small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return cv2.dilate(small, np.ones((5, 5), np.uint8))


def _background_lab(lab: np.ndarray, background: np.ndarray) -> np.ndarray | None:
    """Mean L*a*b* of the background pixels, or None when they are less than 2 % of the picture."""
    if background.mean() < 0.02:
        return None
    return lab[background].mean(axis=0)


def _background_figures(
    small: dict[int, np.ndarray], background: np.ndarray, photo_lab: np.ndarray | None
) -> tuple[float | None, float | None]:
    """(flicker, colour): the largest change of the background's mean L* from one frame to the next (in
    the sampled runs), and the largest CIEDE2000 difference of its mean colour from the photo's."""
    found = {k: _background_lab(lab, background) for k, lab in small.items()}
    means = {k: m for k, m in found.items() if m is not None}
    if not means:  # under 2 % of the picture is background
        return None, None
    steps = [abs(float(means[k + 1][0] - means[k][0])) for k in means if k + 1 in means]
    colour = max(delta_e_2000(m, photo_lab) for m in means.values()) if photo_lab is not None else None
    return (max(steps) if steps else None), colour


def _seam(first: np.ndarray, last: np.ndarray) -> float:
    """Mean |ΔL*| between the last frame and the first."""
    return float(np.abs(last[..., 0] - first[..., 0]).mean())


def _flow_life(small: dict[int, np.ndarray]) -> float:
    """Motion anywhere in the picture (clips without a face): the 95th percentile of optical-flow length
    from the first frame, per frame height."""
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    grey = [np.clip(small[k][..., 0] * 2.55, 0, 255).astype(np.uint8) for k in sorted(small)]
    best = 0.0
    for g in grey[1:]:
        flow = dis.calc(grey[0], g, None)  # type: ignore[call-overload]  # None allocates the flow
        best = max(best, float(np.percentile(np.linalg.norm(flow, axis=2), 95)))
    return best / grey[0].shape[0]


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """CIEDE2000 colour difference of two L*a*b* colours (Sharma, Wu and Dalal's formulation)."""
    l1, a1, b1 = (float(v) for v in lab1)
    l2, a2, b2 = (float(v) for v in lab2)
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0
    dl, dc = l2 - l1, c2p - c1p
    dh = 0.0
    if c1p * c2p:
        dh = h2p - h1p
        dh = dh - 360 if dh > 180 else dh + 360 if dh < -180 else dh
    big_dh = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh / 2))
    l_bar, cp_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    h_bar = h1p + h2p
    if c1p * c2p:
        h_bar = (
            (h1p + h2p) / 2 if abs(h1p - h2p) <= 180 else (h1p + h2p + (360 if h1p + h2p < 360 else -360)) / 2
        )
    t = (
        1
        - 0.17 * math.cos(math.radians(h_bar - 30))
        + 0.24 * math.cos(math.radians(2 * h_bar))
        + 0.32 * math.cos(math.radians(3 * h_bar + 6))
        - 0.20 * math.cos(math.radians(4 * h_bar - 63))
    )
    d_theta = 30 * math.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(cp_bar**7 / (cp_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / math.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -math.sin(math.radians(2 * d_theta)) * r_c
    return math.sqrt(
        (dl / s_l) ** 2 + (dc / s_c) ** 2 + (big_dh / s_h) ** 2 + r_t * (dc / s_c) * (big_dh / s_h)
    )
