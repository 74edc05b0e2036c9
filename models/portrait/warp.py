"""One frame: channel values → backward sampling map → `cv2.remap` of the photo.

The rig's basis fields are forward displacements (where a point of the photo goes). `cv2.remap` needs
the inverse (where each output pixel comes from), found on the coarse grid by fixed-point iteration
O(y) = −F(y + O(y)); it converges because the fields are smooth (|∇F| < 1, the same condition that
makes the warp fold-free, which the mesh's fold guard keeps every frame, as the browser's does: see
models/portrait/mesh.py FoldGuard). The coarse map is upsampled to full resolution only inside the
region that can move; the rest of the frame is the photo, untouched.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.portrait.eyes import edit_eye
from models.portrait.rig import Rig


class Renderer:
    def __init__(self, rig: Rig, photo: np.ndarray) -> None:
        self.rig = rig
        self.photo = np.ascontiguousarray(photo)
        hf, wf = rig.field_shape
        k = rig.k
        self._grid = np.dstack(np.meshgrid(np.arange(wf, dtype=np.float32), np.arange(hf, dtype=np.float32)))
        r0, r1, c0, c1 = rig.roi
        self._box = (r0 * k, min(rig.height, r1 * k), c0 * k, min(rig.width, c1 * k))  # y0, y1, x0, x1
        y0, y1, x0, x1 = self._box
        # Absolute pixel coordinates over the whole upsampled ROI, which may run past the photo's edge by
        # less than a cell: the map is added and then viewed at the box's size, never copied.
        bx, by = np.meshgrid(
            np.arange(x0, x0 + (c1 - c0) * k, dtype=np.float32),
            np.arange(y0, y0 + (r1 - r0) * k, dtype=np.float32),
        )
        self._base = np.dstack([bx, by])
        self._full = (y1 - y0, x1 - x0) == self.photo.shape[:2]
        self.folds_prevented = 0

    def render(
        self,
        coeffs: np.ndarray,
        eyes: list[tuple[float, float, float]],
        out: np.ndarray | None = None,
        *,
        guarded: bool = False,
    ) -> np.ndarray:
        """A frame for channel values `coeffs` (one per basis row) and per-face (blink, gaze_x, gaze_y).
        `guarded`: the values are already scaled by the fold guard (guard_clip), which is then not run."""
        rig = self.rig
        if out is None:
            out = np.empty_like(self.photo)
        y0, y1, x0, x1 = self._box
        if not self._full:
            out[...] = self.photo
        if y1 <= y0 or x1 <= x0:
            return out
        offsets = self._inverse(np.asarray(coeffs, np.float32), guarded)  # (hf, wf, 2)
        r0, r1, c0, c1 = rig.roi
        k = rig.k
        full = cv2.resize(
            offsets[r0:r1, c0:c1], ((c1 - c0) * k, (r1 - r0) * k), interpolation=cv2.INTER_LINEAR
        )
        maps = cv2.add(full, self._base, dst=full)[: y1 - y0, : x1 - x0]  # a view: OpenCV takes its stride
        reach = float(np.abs(offsets).max()) + 2.0
        for face, (closure, gaze_x, gaze_y) in zip(rig.faces, eyes, strict=True):
            if closure <= 1e-3 and abs(gaze_x) <= 1e-3 and abs(gaze_y) <= 1e-3:
                continue
            for eye in face.eyes:
                bx0, by0, bx1, by1 = eye.box
                px0, px1 = max(x0, int(bx0 - reach)), min(x1, int(bx1 + reach) + 1)
                py0, py1 = max(y0, int(by0 - reach)), min(y1, int(by1 + reach) + 1)
                if px1 > px0 and py1 > py0:
                    patch = maps[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0]
                    edit_eye(patch[..., 0], patch[..., 1], eye, closure, gaze_x, gaze_y)
        if self._full and out.flags.c_contiguous:
            cv2.remap(  # type: ignore[call-overload]  # stub: map2 may be None (CV_32FC2 map1)
                self.photo, maps, None, cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_REFLECT
            )
        else:
            out[y0:y1, x0:x1] = cv2.remap(  # type: ignore[call-overload]  # stub: map2 may be None (CV_32FC2 map1)
                self.photo, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        return out

    def guard_clip(self, coeffs: np.ndarray) -> np.ndarray:
        """Every frame's channel values (T, C) scaled as the fold guard says, all frames in one pass (a
        frame at a time costs about 0.5 ms); render them with guarded=True."""
        guard = self.rig.fold_scale
        if guard is None:
            return coeffs
        batched = getattr(guard, "scales", None)  # the mesh's FoldGuard has it
        scales = batched(coeffs) if batched is not None else np.array([guard(c) for c in coeffs])
        self.folds_prevented += int((scales < 1.0).sum())
        return (coeffs * scales[:, None]).astype(coeffs.dtype)

    def _inverse(self, coeffs: np.ndarray, guarded: bool = False) -> np.ndarray:
        """Backward offsets (hf, wf, 2) in image pixels, the motion scaled down where it would fold."""
        rig = self.rig
        hf, wf = rig.field_shape
        if rig.fold_scale is not None and not guarded:  # the mesh's triangles say how much it can take
            scale = rig.fold_scale(coeffs)
            if scale < 1.0:
                self.folds_prevented += 1
            coeffs = scale * coeffs
        forward = (coeffs @ rig.basis).reshape(2, hf, wf).transpose(1, 2, 0)
        return self._fixed_point(np.ascontiguousarray(forward))

    def _fixed_point(self, forward: np.ndarray, steps: int = 2) -> np.ndarray:
        k = self.rig.k
        offsets = -forward
        for _ in range(steps):
            where = self._grid + offsets / k
            offsets = -cv2.remap(  # type: ignore[call-overload]  # stub: map2 may be None (CV_32FC2 map1)
                forward, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        return offsets

    def _min_jacobian(self, offsets: np.ndarray) -> float:
        k = self.rig.k
        dox_dy, dox_dx = np.gradient(offsets[..., 0] / k)
        doy_dy, doy_dx = np.gradient(offsets[..., 1] / k)
        det = (1 + dox_dx) * (1 + doy_dy) - dox_dy * doy_dx
        return float(det.min())
