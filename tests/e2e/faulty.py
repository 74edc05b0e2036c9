"""A test-only animator for the fault tests, loaded by the worker as
`VIVIFY_ANIMATOR=tests.e2e.faulty:Faulty` (the jobs table keeps 32 characters).

It is the push-in animator, except that the job's seed picks a fault, so one worker process can run
a failing job and then a healthy one:
- seed ending in 1: slow, `VIVIFY_TEST_FRAME_SLEEP_S` (default 0.05 s) per frame, so a job is caught mid-run;
- seed ending in 2: raises an error shaped like torch.cuda.OutOfMemoryError;
- any other seed: the plain push-in.
"""

from __future__ import annotations

import os
import time

from PIL import Image

from models.base import AnimationRequest, Frames, ProgressCallback, Stage
from models.push_in import PushInAnimator


class OutOfMemoryError(RuntimeError):
    """Same name and message shape as torch.cuda.OutOfMemoryError (no torch needed)."""


class Faulty(PushInAnimator):
    name = "faulty"

    def __init__(self) -> None:
        super().__init__(max_side=128)
        self.frame_sleep_s = float(os.environ.get("VIVIFY_TEST_FRAME_SLEEP_S", "0.05"))

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        seed = request.seed or 0
        if seed % 10 == 2:
            progress(Stage.ANIMATING, 0.1, "")
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)")
        if seed % 10 != 1:
            return super().animate(photo, request, progress)

        def slow_progress(stage: Stage, fraction: float, detail: str = "") -> None:
            if stage == Stage.ANIMATING:
                time.sleep(self.frame_sleep_s)
            progress(stage, fraction, detail)

        return super().animate(photo, request, slow_progress)
