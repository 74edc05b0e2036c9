"""The server's frame of a rig at given channel values, for the tests that compare frames (the live
view's canvas in Chromium, a clip's frame, the mesh against the dense fields), and the fold test."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.portrait.mesh import MeshRig, dense_rig
from models.portrait.warp import Renderer


def render_values(mesh: MeshRig, rgb: np.ndarray, values: Mapping[str, float]) -> np.ndarray:
    """One frame at channel values (missing channels are 0), every face alike: the server's frame."""
    if rgb.shape[:2] != (mesh.height, mesh.width):
        raise ValueError(f"the photo is {rgb.shape[1]}x{rgb.shape[0]}, the rig {mesh.width}x{mesh.height}")
    rig = dense_rig(mesh)
    coeffs = np.array([float(values.get(ch, 0.0)) for ch, _ in mesh.rows], np.float32)
    eye = (
        float(values.get("blink", 0.0)),
        float(values.get("gaze_x", 0.0)),
        float(values.get("gaze_y", 0.0)),
    )
    return Renderer(rig, rgb).render(coeffs, [eye] * len(rig.faces))


def min_jacobian(k: int, offsets: np.ndarray) -> float:
    """The smallest Jacobian determinant of the backward map x + offsets(x) on a grid of spacing `k` px
    (Renderer._inverse's): above 0 everywhere, the warp folds nowhere."""
    dox_dy, dox_dx = np.gradient(offsets[..., 0] / k)
    doy_dy, doy_dx = np.gradient(offsets[..., 1] / k)
    det = (1 + dox_dx) * (1 + doy_dy) - dox_dy * doy_dx
    return float(det.min())
