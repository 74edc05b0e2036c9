"""The simplest honest animator: a slow, eased camera push-in on the still photo (a Ken Burns move).

Nothing in the photo moves; it exists so the whole service runs with no face model and no GPU, and
is named for exactly what it does.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from models.base import AnimationRequest, DrawnFrames, Frames, ProgressCallback, Stage
from models.clip_shape import CLIP_DEFAULT_S


class PushInAnimator:
    name = "push-in"

    def __init__(self, zoom: float = 1.08, max_side: int = 720) -> None:
        self.zoom = zoom
        self.max_side = max_side

    def setup(self) -> None:
        """Nothing to load."""

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        t0 = time.perf_counter()
        progress(Stage.ANALYZING, 0.0, "")
        img = photo.convert("RGB")
        size = request.render_size(img.size)
        if size:
            img = img.resize(size, Image.Resampling.LANCZOS) if img.size != tuple(size) else img
        elif max(img.size) > self.max_side:
            img.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
        w, h = img.size
        w, h = w - w % 2, h - h % 2
        img = img.crop((0, 0, w, h))
        fps = request.fps
        n = request.frames or round(fps * (request.duration_s or CLIP_DEFAULT_S))
        progress(Stage.ANALYZING, 1.0, "")

        def draw(i: int, out: np.ndarray) -> None:
            t = i / max(n - 1, 1)
            eased = 0.5 - 0.5 * np.cos(np.pi * t)  # ease in and out
            z = 1.0 + (self.zoom - 1.0) * eased
            cw, ch = w / z, h / z
            box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
            out[:] = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR, box=box))
            progress(Stage.ANIMATING, (i + 1) / n, f"{i + 1}/{n}")

        # A camera move: no face moves, so the clip check does not ask for life. Drawn as the encoder
        # takes them, like the portrait animator's: a 4K, 10 s clip is never held whole.
        seconds = {Stage.ANALYZING.value: time.perf_counter() - t0}
        return Frames(frames=DrawnFrames(n, h, w, draw), fps=fps, stage_seconds=seconds, moves=False)
