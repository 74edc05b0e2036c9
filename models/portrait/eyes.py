"""Blinks and gaze: local, full-resolution edits of the sampling map around each eye.

Everything happens in the eye's own frame: u runs from the outer to the inner corner, v points
down the face. The lid curves U(u) (upper) and L(u) (lower) come from the FaceMesh lid landmarks.

- Blink with closure c: the upper lid's edge moves from U to U' = U + c·(L − U). The skin between a
  line T above the lid and the lid edge is stretched down to cover the eye (so the lid and its lashes
  really slide down and a closed eye shows skin), while the eye below the new edge stays where it was
  (the lid occludes it, nothing is squashed). At the corners U = L, so the edit fades out by itself.
- Gaze: inside the opening the iris slides along u (and a little along v), by a window that is zero
  at the corners and near the lids, so the white compresses on one side and the lids stay put.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KNOTS = 25  # lid samples per lid, corner to corner
LID_CLOSE = 0.98  # a full blink brings the upper lid this share of the way to the lower one
GAZE_U = 0.22  # a full gaze moves the iris this share of the eye's length along it
GAZE_V = 0.25  # ... and this share of its widest opening across it
TAPER = 0.3  # the gaze window fades out over this share of the opening near each lid


@dataclass
class EyeRig:
    origin: np.ndarray  # outer corner (x, y), source pixels
    eu: np.ndarray  # unit vector outer → inner corner
    ev: np.ndarray  # unit vector "down the face"
    length: float  # corner to corner, pixels
    knots: np.ndarray  # u of the lid samples, increasing
    upper: np.ndarray  # v of the upper lid at `knots`
    lower: np.ndarray  # v of the lower lid at `knots`
    gap: float  # widest opening, pixels
    skin: float  # height of the lid skin that stretches over the eye
    box: tuple[float, float, float, float]  # source pixels the edit can touch (x0, y0, x1, y1)


def eye_rig(points: np.ndarray, upper: tuple[int, ...], lower: tuple[int, ...]) -> EyeRig:
    """Lid curves of one eye from landmark index lists that run outer corner → inner corner."""
    p = points[:, :2].astype(np.float64)
    origin, inner = p[upper[0]], p[upper[-1]]
    eu = inner - origin
    length = float(np.linalg.norm(eu)) or 1.0
    eu /= length
    ev = np.array([-eu[1], eu[0]])
    if (p[list(lower)] - origin).dot(ev).mean() < (p[list(upper)] - origin).dot(ev).mean():
        ev = -ev  # make v grow from the upper lid toward the lower lid
    knots = np.linspace(0.0, length, KNOTS)
    up_u, up_v = (p[list(upper)] - origin).dot(eu), (p[list(upper)] - origin).dot(ev)
    lo_u, lo_v = (p[list(lower)] - origin).dot(eu), (p[list(lower)] - origin).dot(ev)
    u_curve = np.interp(knots, *_increasing(up_u, up_v))
    l_curve = np.interp(knots, *_increasing(lo_u, lo_v))
    l_curve = np.maximum(l_curve, u_curve)
    gap = float((l_curve - u_curve).max())
    skin = 1.3 * gap + 0.12 * length
    corners = [(-0.15 * length, u_curve.min() - skin - 2), (1.15 * length, u_curve.min() - skin - 2),
               (-0.15 * length, l_curve.max() + 2), (1.15 * length, l_curve.max() + 2)]  # fmt: skip
    xy = np.array([origin + a * eu + b * ev for a, b in corners])
    box = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))
    return EyeRig(origin, eu, ev, length, knots, u_curve, l_curve, gap, skin, box)


def _increasing(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(u, kind="stable")
    return u[order], v[order]


def edit_eye(
    sx: np.ndarray, sy: np.ndarray, eye: EyeRig, closure: float, gaze_x: float, gaze_y: float
) -> None:
    """Rewrite source coordinates (sx, sy), in place, so the eye blinks by `closure` and looks by gaze.

    gaze_x > 0 moves the iris toward the picture's right; gaze_y > 0 moves it down. Units are
    fractions of the eye's half-width / half-opening.
    """
    ox, oy = eye.origin
    dx, dy = sx - ox, sy - oy
    u = dx * eye.eu[0] + dy * eye.eu[1]
    v = dx * eye.ev[0] + dy * eye.ev[1]
    top = np.interp(u, eye.knots, eye.upper)
    bottom = np.interp(u, eye.knots, eye.lower)
    opening = bottom - top
    inside_u = (u > 0) & (u < eye.length)
    if closure > 1e-3:
        edge = top + LID_CLOSE * closure * opening
        skin_top = top - eye.skin
        covered = inside_u & (v >= skin_top) & (v < edge)
        ratio = eye.skin / (eye.skin + LID_CLOSE * closure * opening)
        v = np.where(covered, skin_top + (v - skin_top) * ratio, v)
    if abs(gaze_x) > 1e-3 or abs(gaze_y) > 1e-3:
        taper = TAPER * opening + 1e-3
        window = np.sin(np.pi * np.clip(u / eye.length, 0.0, 1.0))
        window = window * np.clip((v - top) / taper, 0, 1) * np.clip((bottom - v) / taper, 0, 1)
        u = u - gaze_x * GAZE_U * eye.length * np.sign(eye.eu[0] or 1.0) * window
        v = v - gaze_y * GAZE_V * eye.gap * window
    sx[...] = ox + u * eye.eu[0] + v * eye.ev[0]
    sy[...] = oy + u * eye.eu[1] + v * eye.ev[1]
