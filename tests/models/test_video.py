"""MP4 encoding and probing with the ffmpeg that imageio-ffmpeg ships."""

import numpy as np
import pytest

from models.video import AI_GENERATED_COMMENT, encode_mp4, poster_jpeg, probe, read_frames


def _ramp(t: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, :, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        frames[i, :, :, 1] = (i * 20) % 256
        frames[i, 10:20, i * 4 : i * 4 + 10, 2] = 255  # a moving square
    return frames


def test_encode_is_h264_yuv420p_faststart_tagged() -> None:
    info = probe(encode_mp4(_ramp(), fps=24))
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (info.width, info.height, info.fps, info.frame_count) == (64, 48, 24.0, 12)
    assert info.duration_s == pytest.approx(0.5, abs=0.05)
    assert info.faststart
    assert info.comment == AI_GENERATED_COMMENT


def test_odd_sizes_are_cropped_to_even_not_stretched() -> None:
    frames = _ramp(h=49, w=65)
    info = probe(encode_mp4(frames, fps=24))
    assert (info.width, info.height) == (64, 48)


def test_decoded_frames_match_the_input() -> None:
    frames = _ramp()
    decoded = read_frames(encode_mp4(frames, fps=24, crf=10))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 4


def test_frame_rate_conversion_interpolates_to_output_fps() -> None:
    frames = _ramp(t=8)
    info = probe(encode_mp4(frames, fps=8, output_fps=24))
    assert info.fps == 24.0
    assert info.duration_s == pytest.approx(1.0, abs=0.05)
    assert info.frame_count == 24


def test_empty_input_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((0, 8, 8, 3), np.uint8), fps=24)


def test_poster_is_a_jpeg() -> None:
    assert poster_jpeg(_ramp()[0])[:3] == b"\xff\xd8\xff"
