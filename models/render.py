"""Photo → Clip: run an animator, post-process and encode. The one entry point the worker and CLI use."""

from __future__ import annotations

import time

from PIL import Image

from models.base import AnimationRequest, Animator, Clip, ProgressCallback, Stage, no_progress
from models.video import encode_mp4, poster_jpeg


def render_clip(
    animator: Animator,
    photo: Image.Image,
    request: AnimationRequest,
    progress: ProgressCallback = no_progress,
) -> Clip:
    """Animate `photo` and return an encoded MP4 with its poster; per-stage seconds are recorded."""
    result = animator.animate(photo.convert("RGB"), request, progress)
    stage_seconds = dict(result.stage_seconds)
    progress(Stage.ENCODING, 0.0, "")
    t0 = time.perf_counter()
    mp4 = encode_mp4(result.frames, result.fps, output_fps=request.fps)
    stage_seconds[Stage.ENCODING.value] = time.perf_counter() - t0
    progress(Stage.ENCODING, 1.0, "")
    out_frames = result.frames.shape[0]
    if abs(result.fps - request.fps) > 1e-6:
        out_frames = round(result.frames.shape[0] * request.fps / result.fps)
    h, w = result.frames.shape[1:3]
    return Clip(
        mp4=mp4,
        poster_jpeg=poster_jpeg(result.frames[0]),
        width=w - w % 2,
        height=h - h % 2,
        fps=float(request.fps),
        frame_count=out_frames,
        stage_seconds=stage_seconds,
    )
