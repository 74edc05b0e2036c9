"""The rig: everything about one photo that does not change from frame to frame.

Motion is a weighted sum of fixed displacement fields ("basis fields"), one per motion channel and
face, computed once per photo on a coarse grid (the image subsampled by an integer factor `k`):

- head yaw / pitch: each point moves by the rotation of its 3-D position about a pivot behind the
  face (depth from the FaceMesh z, interpolated between the landmarks), so the nose moves more than
  the cheeks and the head turns rather than slides; roll rotates about a point in the neck;
- smile and brow raise: smooth bumps centred on the mouth corners, cheeks and brows;
- breathing: a slight vertical stretch of the person, zero at the bottom edge.

Every head field is multiplied by a feathered weight (the person mask, limited to an ellipse around
the head that fades out along the neck), so the background stays exactly still and the seam is
spread over many pixels instead of a visible edge. Blinks and gaze are local full-resolution edits
around each eye (see eyes.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from models.face import (
    CHIN,
    FACE_OVAL,
    FOREHEAD,
    LEFT_BROW,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    MOUTH_CORNERS,
    RIGHT_BROW,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    Face,
)
from models.portrait.eyes import EyeRig, eye_rig

FACE_CHANNELS = ("yaw", "pitch", "roll", "smile", "brow")
FIELD_MAX_SIDE = 200  # coarse grid size: the warp is smooth, so computing it finer buys nothing
DEG = math.pi / 180.0

# Shape constants, in units of the face's width unless said otherwise. Tuned by eye on real portraits.
PIVOT_BEHIND_RIM = 0.25  # the head turns about an axis this far behind the face's outline
DEPTH_GAIN = 0.6  # mediapipe's z exaggerates depth; scale it for the parallax of a turn
FEATHER = 0.06  # blur of the head weight (in face heights): the width of the invisible seam
BREATH_PX = 0.005  # rise of the shoulders at full breath, in image heights


@dataclass
class FaceRig:
    eyes: tuple[EyeRig, ...]
    first_channel: int  # index of this face's "yaw" row in Rig.basis


@dataclass
class Rig:
    width: int
    height: int
    k: int  # the coarse grid samples every k-th pixel
    basis: np.ndarray  # (C, 2 * hf * wf) float32: forward displacement (px) per unit of each channel
    faces: list[FaceRig]
    breath_channel: int
    roi: tuple[int, int, int, int]  # coarse-grid rows r0:r1 and columns c0:c1 where anything moves
    # The factor a frame's position motion is scaled by so the warp does not fold: the mesh's fold guard
    # (mesh.py FoldGuard, the browser's test too). None: unguarded, for fields measured on their own.
    fold_scale: Callable[[np.ndarray], float] | None = None

    @property
    def field_shape(self) -> tuple[int, int]:
        return math.ceil(self.height / self.k), math.ceil(self.width / self.k)

    @property
    def channels(self) -> int:
        return self.basis.shape[0]


def build_rig(width: int, height: int, faces: list[Face], person: np.ndarray | None) -> Rig:
    """Basis fields for `faces` (landmarks in pixels of a width×height photo) and the person mask."""
    k = max(1, math.ceil(max(width, height) / FIELD_MAX_SIDE))
    hf, wf = math.ceil(height / k), math.ceil(width / k)
    # Image-pixel coordinates of the coarse grid's samples (cv2.resize's half-pixel convention).
    xs = (np.arange(wf, dtype=np.float32) + 0.5) * k - 0.5
    ys = (np.arange(hf, dtype=np.float32) + 0.5) * k - 0.5
    gx, gy = np.meshgrid(xs, ys)
    mask: np.ndarray
    if person is None:
        mask = np.ones((hf, wf), np.float32)
    else:
        mask = cv2.resize(person.astype(np.float32), (wf, hf), interpolation=cv2.INTER_AREA)
    rows: list[np.ndarray] = []
    face_rigs: list[FaceRig] = []
    for face in faces:
        first = len(rows)
        rows.extend(_face_fields(face, gx, gy, mask, k))
        face_rigs.append(FaceRig(eyes=_eyes(face), first_channel=first))
    breath = len(rows)
    rows.append(_breath_field(faces[0], gx, gy, mask, k, height))
    basis = np.stack([r.reshape(-1) for r in rows]).astype(np.float32)
    return Rig(width, height, k, basis, face_rigs, breath, roi_of(basis, hf, wf, face_rigs, k))


def _face_fields(face: Face, gx: np.ndarray, gy: np.ndarray, mask: np.ndarray, k: int) -> list[np.ndarray]:
    p = face.points
    fw, fh = max(face.width, 4.0), max(face.size, 4.0)
    up = p[FOREHEAD, :2] - p[CHIN, :2]
    up /= np.linalg.norm(up) + 1e-9
    weight = _head_weight(face, gx, gy, mask, k)

    # Depth behind the pivot, per grid point: landmarks inside the face, the rim's depth outside.
    z_rim = float(p[list(FACE_OVAL), 2].mean())
    rel = DEPTH_GAIN * (z_rim - p[:, 2]) + PIVOT_BEHIND_RIM * fw
    depth = _depth_map(p[:, :2], rel, PIVOT_BEHIND_RIM * fw, gx.shape, k, 0.05 * fw / k)

    yaw = np.stack([depth * DEG, np.zeros_like(depth)]) * weight  # + yaw: face toward the picture's right
    pitch = np.stack([np.zeros_like(depth), -depth * DEG]) * weight  # + pitch: looking up
    pivot = p[CHIN, :2] - 0.35 * fh * up  # in the neck
    roll = np.stack([-(gy - pivot[1]) * DEG, (gx - pivot[0]) * DEG]) * weight

    # Smile: mouth corners out and up, cheeks lifted, lower lids pushed up a touch.
    smile = np.zeros((2, *gx.shape), np.float32)
    mouth_mid = p[list(MOUTH_CORNERS), :2].mean(axis=0)
    for idx in MOUTH_CORNERS:
        out = p[idx, :2] - mouth_mid
        out /= np.linalg.norm(out) + 1e-9
        smile += _bump(gx, gy, p[idx, :2], 0.09 * fw, 0.045 * fw * out + 0.04 * fw * up)
    for idx in (205, 425):  # cheeks
        smile += _bump(gx, gy, p[idx, :2], 0.12 * fw, 0.018 * fw * up)
    for idx in (145, 374):  # lower lids
        smile += _bump(gx, gy, p[idx, :2], 0.05 * fw, 0.006 * fw * up)

    brow = np.zeros((2, *gx.shape), np.float32)
    for brow_idx in (RIGHT_BROW, LEFT_BROW):
        pts = p[list(brow_idx[:5]), :2]
        along = pts[-1] - pts[0]
        along /= np.linalg.norm(along) + 1e-9
        brow += _bump(gx, gy, pts.mean(axis=0), (0.11 * fw, 0.05 * fw), 0.035 * fw * up, along)
    return [yaw, pitch, roll, smile, brow]


def _depth_map(xy: np.ndarray, values: np.ndarray, outside: float, shape, k: int, sigma: float) -> np.ndarray:
    """Landmark values spread over the grid (Gaussian splatting), `outside` beyond the face outline."""
    h, w = shape
    ix = np.clip(np.round((xy[:, 0] + 0.5) / k - 0.5).astype(int), 0, w - 1)
    iy = np.clip(np.round((xy[:, 1] + 0.5) / k - 0.5).astype(int), 0, h - 1)
    total, count = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    np.add.at(total, (iy, ix), values.astype(np.float32))
    np.add.at(count, (iy, ix), 1.0)
    sigma = max(sigma, 1.0)
    total, count = _blur(total, sigma), _blur(count, sigma)
    inside = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(np.stack([ix, iy], 1)[list(FACE_OVAL)]).astype(np.int32), (1,))
    share = _blur(inside.astype(np.float32), sigma) * np.clip(count / (count.max() * 0.05 + 1e-9), 0, 1)
    spread = total / np.maximum(count, 1e-6)
    return (share * spread + (1 - share) * outside).astype(np.float32)


def _head_weight(face: Face, gx: np.ndarray, gy: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """1 on the head and hair, fading to 0 down the neck and across the silhouette, 0 on the background."""
    p = face.points
    fw, fh = max(face.width, 4.0), max(face.size, 4.0)
    hull = np.zeros(gx.shape, np.uint8)
    oval = (p[list(FACE_OVAL), :2] + 0.5) / k - 0.5
    cv2.fillConvexPoly(hull, np.round(oval).astype(np.int32), (1,))
    inside = np.maximum(mask, _blur(hull.astype(np.float32), 0.05 * fh / k))
    centre = p[list(FACE_OVAL), :2].mean(axis=0)
    up = p[FOREHEAD, :2] - p[CHIN, :2]
    up /= np.linalg.norm(up) + 1e-9
    centre = centre + 0.12 * fh * up
    dx, dy = gx - centre[0], gy - centre[1]
    along_up = dx * up[0] + dy * up[1]
    across = dx * -up[1] + dy * up[0]
    r = np.sqrt((across / (0.85 * fw)) ** 2 + (along_up / (0.8 * fh)) ** 2)
    ellipse = 1.0 - _smoothstep((r - 1.0) / 0.55)
    return _blur(inside * ellipse, FEATHER * fh / k).astype(np.float32)


def _breath_field(face: Face, gx: np.ndarray, gy: np.ndarray, mask: np.ndarray, k: int, height: int):
    """The person rises a little: 0 at the bottom edge, full height from the shoulders up."""
    shoulders = face.points[CHIN, 1] + 0.35 * face.size
    ramp = np.clip((height - 1 - gy) / max(1.0, height - 1 - shoulders), 0.0, 1.0)
    soft = _blur(mask, 0.04 * face.size / k)
    dy = -BREATH_PX * height * ramp * soft
    return np.stack([np.zeros_like(dy), dy]).astype(np.float32)


def _eyes(face: Face) -> tuple[EyeRig, ...]:
    if face.width < 40:  # eyes of a few pixels: a blink would be invisible and the lid fit unreliable
        return ()
    return (
        eye_rig(face.points, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER),
        eye_rig(face.points, LEFT_EYE_UPPER, LEFT_EYE_LOWER),
    )


def roi_of(basis: np.ndarray, hf: int, wf: int, faces: list[FaceRig], k: int) -> tuple[int, int, int, int]:
    """Coarse rows/columns that can move at all; everything outside is copied from the photo."""
    moving = (np.abs(basis).max(axis=0).reshape(2, hf, wf).max(axis=0)) > 1e-3
    for f in faces:
        for e in f.eyes:
            x0, y0, x1, y1 = e.box
            moving[int(y0 // k) : int(y1 // k) + 1, int(x0 // k) : int(x1 // k) + 1] = True
    rows, cols = np.nonzero(moving.any(axis=1))[0], np.nonzero(moving.any(axis=0))[0]
    if rows.size == 0:
        return 0, 0, 0, 0
    return (
        int(max(0, rows[0] - 1)),
        int(min(hf, rows[-1] + 2)),
        int(max(0, cols[0] - 1)),
        int(min(wf, cols[-1] + 2)),
    )


def _bump(gx, gy, centre, sigma, disp, along=None) -> np.ndarray:
    """A Gaussian bump of displacement `disp` at `centre`; `sigma` may be (along, across) `along`."""
    dx, dy = gx - centre[0], gy - centre[1]
    if along is None:
        d2 = (dx * dx + dy * dy) / (sigma * sigma)
    else:
        a = dx * along[0] + dy * along[1]
        c = -dx * along[1] + dy * along[0]
        d2 = (a / sigma[0]) ** 2 + (c / sigma[1]) ** 2
    g = np.exp(-0.5 * d2).astype(np.float32)
    return np.stack([g * float(disp[0]), g * float(disp[1])])


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.3:
        return a.astype(np.float32)
    return cv2.GaussianBlur(
        a.astype(np.float32), (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REPLICATE
    )


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)
