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

SPAN_ROWS = 8  # grid rows per band of prepare_clip's moving spans: fewer calls, or a tighter fit


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
        # The ROI's cells' own pixel coordinates, with a cell of margin all round: added to the coarse
        # offsets before the upsampling, which interpolates a linear function exactly, so the full-size
        # map comes out of cv2.resize already absolute, with no full-size add. The margin (the offsets
        # replicated, the coordinates carried on) keeps the edge half-cells exact where the resize would
        # clamp; the map is cropped by a view, never copied.
        cx = x0 + (np.arange(-1, c1 - c0 + 1, dtype=np.float32) + 0.5) * k - 0.5
        cy = y0 + (np.arange(-1, r1 - r0 + 1, dtype=np.float32) + 0.5) * k - 0.5
        self._coarse_base = np.dstack(np.meshgrid(cx, cy))
        self._full = (y1 - y0, x1 - x0) == self.photo.shape[:2]
        # The basis with each cell's (x, y) pair side by side, so a frame's forward field comes out of the
        # product already in (hf, wf, 2) order: no copy per frame.
        rows = rig.basis.shape[0]
        self._basis = np.ascontiguousarray(rig.basis.reshape(rows, 2, hf, wf).transpose(0, 2, 3, 1)).reshape(
            rows, -1
        )
        self._spans: list[tuple[int, int, int, int]] | None = None  # prepare_clip's: where the clip moves
        self._primed: np.ndarray | None = None  # the `out` that holds the photo outside the spans

    def render(
        self,
        coeffs: np.ndarray,
        eyes: list[tuple[float, float, float]],
        out: np.ndarray | None = None,
        *,
        prepared: bool = False,
    ) -> np.ndarray:
        """A frame for channel values `coeffs` (one per basis row) and per-face (blink, gaze_x, gaze_y).
        `prepared`: a frame of the clip prepare_clip returned, already scaled by the fold guard, which is
        then not run, and only where that clip moves at all is drawn (`out` must then be given the same
        array frame after frame, or a new one: the photo is copied into a new one once)."""
        rig = self.rig
        if out is None:
            out = np.empty_like(self.photo)
        y0, y1, x0, x1 = self._box
        spans = self._spans if prepared else None
        primed = self._primed is out  # (not an `if out is ...`: that would loosen out's type to Optional)
        if spans is not None:
            if not primed:
                out[...] = self.photo
                self._primed = out
        elif not self._full:
            out[...] = self.photo
        if y1 <= y0 or x1 <= x0:
            return out
        offsets = self._inverse(np.asarray(coeffs, np.float32), prepared)  # (hf, wf, 2)
        r0, r1, c0, c1 = rig.roi
        k = rig.k
        coarse = cv2.copyMakeBorder(offsets[r0:r1, c0:c1], 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        cv2.add(coarse, self._coarse_base, dst=coarse)
        full = cv2.resize(coarse, ((c1 - c0 + 2) * k, (r1 - r0 + 2) * k), interpolation=cv2.INTER_LINEAR)
        maps = full[k : k + y1 - y0, k : k + x1 - x0]  # a view: OpenCV takes its stride
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
        if spans is not None:
            for sy0, sy1, sx0, sx1 in spans:  # bands of rows, each from its first moving column to its last
                cv2.remap(  # type: ignore[call-overload]  # stub: map2 may be None (CV_32FC2 map1)
                    self.photo,
                    maps[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0],
                    None,
                    cv2.INTER_LINEAR,
                    dst=out[sy0:sy1, sx0:sx1],
                    borderMode=cv2.BORDER_REFLECT,
                )
        elif self._full and out.flags.c_contiguous:
            cv2.remap(  # type: ignore[call-overload]  # stub: map2 may be None (CV_32FC2 map1)
                self.photo, maps, None, cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_REFLECT
            )
        else:
            out[y0:y1, x0:x1] = cv2.remap(  # type: ignore[call-overload]  # stub: map2 may be None (CV_32FC2 map1)
                self.photo, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        return out

    def prepare_clip(self, coeffs: np.ndarray) -> np.ndarray:
        """A whole clip's channel values (T, C), scaled as the fold guard says, all frames in one pass (a
        frame at a time costs about 0.5 ms); render them with prepared=True. Also finds where this clip
        moves at all: a quarter to a third of a portrait is background that no frame moves, and is then
        left as the photo instead of being sampled again every frame."""
        guard = self.rig.fold_scale
        if guard is not None:
            batched = getattr(guard, "scales", None)  # the mesh's FoldGuard has it
            scales = batched(coeffs) if batched is not None else np.array([guard(c) for c in coeffs])
            coeffs = (coeffs * scales[:, None]).astype(coeffs.dtype)
        self._spans = self._moving_spans(coeffs)
        return coeffs

    def _moving_spans(self, coeffs: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Pixel boxes (y0, y1, x0, x1), one per band of SPAN_ROWS grid rows, from the band's first cell that
        can move in this clip to its last. A cell whose displacement stays under 1/64 px in every frame
        (bounded by each channel's largest value times its field) is drawn as the photo itself: OpenCV
        samples at 1/32 px, so there the warp gives the photo's very pixels. Two cells of margin cover
        the upsampling and the inverse; eyes, with their edit's reach, always count as moving."""
        rig, k = self.rig, self.rig.k
        hf, wf = rig.field_shape
        r0, r1, c0, c1 = rig.roi
        if not len(coeffs):
            return []
        bound = (np.abs(coeffs).max(axis=0) @ np.abs(rig.basis)).reshape(2, hf, wf).max(axis=0)
        moving = (bound >= 1 / 64).astype(np.uint8)
        reach = float(bound.max()) + 2.0
        for face in rig.faces:
            for eye in face.eyes:
                ex0, ey0, ex1, ey1 = eye.box
                rows = slice(max(0, int((ey0 - reach) // k)), int((ey1 + reach) // k) + 1)
                moving[rows, max(0, int((ex0 - reach) // k)) : int((ex1 + reach) // k) + 1] = 1
        moving = cv2.dilate(moving, np.ones((5, 5), np.uint8))
        spans = []
        for b0 in range(r0, r1, SPAN_ROWS):
            b1 = min(b0 + SPAN_ROWS, r1)
            cols = np.nonzero(moving[b0:b1, c0:c1].any(axis=0))[0]
            if len(cols):
                spans.append(
                    (
                        b0 * k,
                        min(rig.height, b1 * k),
                        (c0 + cols[0]) * k,
                        min(rig.width, (c0 + cols[-1] + 1) * k),
                    )
                )
        return spans

    def _inverse(self, coeffs: np.ndarray, guarded: bool = False) -> np.ndarray:
        """Backward offsets (hf, wf, 2) in image pixels, the motion scaled down where it would fold."""
        rig = self.rig
        hf, wf = rig.field_shape
        if rig.fold_scale is not None and not guarded:  # the mesh's triangles say how much it can take
            coeffs = rig.fold_scale(coeffs) * coeffs
        return self._fixed_point((coeffs @ self._basis).reshape(hf, wf, 2))

    def _fixed_point(self, forward: np.ndarray, steps: int = 2) -> np.ndarray:
        k = self.rig.k
        offsets = -forward
        for _ in range(steps):
            where = self._grid + offsets / k
            offsets = -cv2.remap(  # type: ignore[call-overload]  # stub: map2 may be None (CV_32FC2 map1)
                forward, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        return offsets
