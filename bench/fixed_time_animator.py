"""A fake animator for scale benchmarks: it sleeps a fixed time per job and returns tiny frames.

It is not a product animator. It exists so bench/scale.py measures the queue, the broker and the
database (how jobs/minute grows with workers, how well the ETA predicts, what each job costs in
overhead) without the animation's own CPU/GPU time blurring the numbers.

Load it in a worker with VIVIFY_ANIMATOR=bench.fixed_time_animator:FixedTimeAnimator and set the time
with VIVIFY_ANIMATOR_OPTIONS='{"seconds": 2.0}' or, where the worker does not pass animator options,
BENCH_FIXED_TIME_S=2.0.
"""

from __future__ import annotations

import os
import time

import numpy as np
from PIL import Image

from models.base import AnimationRequest, Frames, ProgressCallback, Stage


class FixedTimeAnimator:
    name = "fixed-time"

    def __init__(
        self, seconds: float | None = None, steps: int = 10, side: int = 32, frames: int = 12
    ) -> None:
        self.seconds = seconds if seconds is not None else float(os.environ.get("BENCH_FIXED_TIME_S", "2.0"))
        self.steps = max(1, steps)
        self.side = side - side % 2
        self.frames = frames

    def setup(self) -> None:
        """Nothing to load."""

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        t0 = time.perf_counter()
        progress(Stage.ANALYZING, 1.0, "")
        # Sleep in steps and report between them, as a denoising loop would (cancel works the same way).
        for i in range(self.steps):
            deadline = t0 + self.seconds * (i + 1) / self.steps
            time.sleep(max(0.0, deadline - time.perf_counter()))
            progress(Stage.ANIMATING, (i + 1) / self.steps, f"{i + 1}/{self.steps}")
        small = np.asarray(photo.convert("RGB").resize((self.side, self.side)), dtype=np.uint8)
        frames = np.repeat(small[None], self.frames, axis=0)
        # fps = the requested rate, so render_clip does not interpolate.
        return Frames(frames=frames, fps=request.fps, stage_seconds={"animating": time.perf_counter() - t0})
