"""The fixed-time animator of the chaos run (bench/chaos.py), recording every successful animate().

No job id reaches an animator (models.base.AnimationRequest carries motion, seed, frames, size, steps,
fps, duration), so the chaos run gives every job its own seed and this animator writes one line per
animate() that returned frames: `seed pid t_start t_end` (wall clock), into
`$CHAOS_ANIMATOR_DIR/animations.log`. Each line is one os.write on an O_APPEND descriptor, well under
PIPE_BUF, so lines of concurrent worker processes never interleave and a SIGKILL leaves whole lines.

Load it with VIVIFY_ANIMATOR=bench.chaos_animator:ChaosAnimator; the time per job is the fixed-time
animator's (VIVIFY_ANIMATOR_OPTIONS='{"seconds": 0.5}' or BENCH_FIXED_TIME_S).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from bench.fixed_time_animator import FixedTimeAnimator
from models.base import AnimationRequest, Frames, ProgressCallback

LOG_NAME = "animations.log"


class ChaosAnimator(FixedTimeAnimator):
    name = "chaos"

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        t_start = time.time()
        frames = super().animate(photo, request, progress)
        folder = os.environ.get("CHAOS_ANIMATOR_DIR")
        if folder:
            line = f"{request.seed} {os.getpid()} {t_start:.3f} {time.time():.3f}\n".encode()
            fd = os.open(Path(folder) / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return frames


def read_runs(folder: Path) -> list[tuple[int, int, float, float]]:
    """(seed, pid, t_start, t_end) of every recorded successful animate()."""
    path = Path(folder) / LOG_NAME
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        seed, pid, t0, t1 = line.split()
        runs.append((int(seed), int(pid), float(t0), float(t1)))
    return runs
