"""The clip's GIF: at most 480 px on the long side and within its byte budget, stepping down in frame
rate, size and palette when the clip is too big for it, and an error (never a broken file) when nothing
fits."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.gif import GIF_MAX_BYTES, LADDER, GifError, gif_size, make_gif
from models.video import encode_mp4


def _clip(width: int, height: int, frames: int, fps: int = 24) -> bytes:
    """A moving, detailed clip (noise over a drifting gradient): GIFs of it are large."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        base = ((xx + 3 * i) % 256)[..., None] * np.array([1.0, 0.6, 0.3]) + (yy % 128)[..., None]
        out[i] = np.clip(base + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    return encode_mp4(out, fps)


def _read(data: bytes) -> tuple[tuple[int, int], int]:
    with Image.open(io.BytesIO(data)) as gif:
        return gif.size, gif.n_frames


def test_a_clip_becomes_a_gif_at_most_480_px_on_the_long_side() -> None:
    gif = make_gif(_clip(640, 360, 48), 640, 360)
    (w, h), frames = _read(gif.data)
    assert (w, h) == (gif.width, gif.height) == (480, 270)
    assert frames == 24  # 2 s at the ladder's first 12 fps
    assert len(gif.data) <= GIF_MAX_BYTES and gif.to_json()["bytes"] == len(gif.data)


def test_a_small_clip_is_never_enlarged() -> None:
    assert gif_size(320, 200, 480) == (320, 200)
    gif = make_gif(_clip(160, 120, 12), 160, 120)
    assert _read(gif.data)[0] == (160, 120)


def test_a_gif_over_budget_steps_down_until_it_fits() -> None:
    mp4 = _clip(640, 360, 48)
    best = make_gif(mp4, 640, 360)
    smaller = make_gif(mp4, 640, 360, max_bytes=len(best.data) // 3)
    assert len(smaller.data) <= len(best.data) // 3
    assert (smaller.width, smaller.fps, smaller.colors) < (best.width, best.fps, best.colors)
    rungs = {(gif_size(640, 360, side)[0], fps, colors) for side, fps, colors in LADDER[1:]}
    assert (smaller.width, smaller.fps, smaller.colors) in rungs  # a lower rung of the ladder
    assert _read(smaller.data)[0] == (smaller.width, smaller.height)


def test_no_gif_fits_a_budget_nothing_meets() -> None:
    with pytest.raises(GifError):
        make_gif(_clip(320, 180, 24), 320, 180, max_bytes=500)


def test_a_clip_that_is_not_a_video_is_an_error_not_a_gif() -> None:
    with pytest.raises(GifError):
        make_gif(b"not an mp4 at all", 320, 180)
