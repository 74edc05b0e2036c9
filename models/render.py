"""Photo → Clip: run an animator, post-process and encode. The one entry point the worker and CLI use."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from models.base import (
    AnimationRequest,
    Animator,
    Clip,
    DrawnFrames,
    ProgressCallback,
    Stage,
    no_progress,
)
from models.postprocess import interpolate_fps
from models.video import Mp4Writer, poster_jpeg


def render_clip(
    animator: Animator,
    photo: Image.Image,
    request: AnimationRequest,
    progress: ProgressCallback = no_progress,
) -> Clip:
    """Animate `photo` and return an encoded MP4 with its poster; per-stage seconds are recorded.

    Frames at another rate than `request.fps` (diffusion models make 7–16 fps) are brought to it by
    motion-compensated interpolation (models.postprocess.interpolate_fps: optical flow, ~1 s for a
    3.6 s 1024×576 clip, where ffmpeg's minterpolate takes ~12 s), counted as post-processing.
    """
    result = animator.animate(photo.convert("RGB"), request, progress)
    stage_seconds = dict(result.stage_seconds)
    frames = result.frames
    if abs(result.fps - request.fps) > 1e-6:
        progress(Stage.POSTPROCESSING, 0.0, f"{result.fps:.3g} → {request.fps} fps")
        t0 = time.perf_counter()
        frames = interpolate_fps(np.asarray(frames), result.fps, request.fps)
        key = Stage.POSTPROCESSING.value
        stage_seconds[key] = stage_seconds.get(key, 0.0) + time.perf_counter() - t0
        progress(Stage.POSTPROCESSING, 1.0, "")
    count, h, w, _ = frames.shape
    drawn = frames if isinstance(frames, DrawnFrames) else None
    if drawn is None:  # drawn frames report their own progress, as the animator draws them
        progress(Stage.ENCODING, 0.0, "")
    t0 = time.perf_counter()
    with Mp4Writer(w, h, request.fps) as writer:
        each = drawn.each(out=np.empty((h, w, 3), np.uint8)) if drawn is not None else iter(frames)
        poster = b""
        for i, frame in enumerate(each):
            if i == 0:
                poster = poster_jpeg(frame)
            writer.write(frame)
        if drawn is not None:
            progress(Stage.ENCODING, 0.0, "")
        mp4 = writer.finish()
    encoding = time.perf_counter() - t0
    if drawn is not None:  # drawing and encoding took turns (or overlapped): each its own share
        key = Stage.ANIMATING.value
        stage_seconds[key] = stage_seconds.get(key, 0.0) + drawn.seconds
        encoding -= drawn.seconds
    stage_seconds[Stage.ENCODING.value] = encoding
    progress(Stage.ENCODING, 1.0, "")
    return Clip(
        mp4=mp4,
        poster_jpeg=poster,
        width=writer.width,
        height=writer.height,
        fps=float(request.fps),
        frame_count=count,
        stage_seconds=stage_seconds,
        moves=result.moves,
        loops=result.loops,
        steady=result.steady,
        photo_analysis=result.photo_analysis,
        note=result.note,
        animator=animator.name,
    )
