"""MP4 encoding and probing with the ffmpeg that imageio-ffmpeg ships."""

import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from models.video import (
    AI_GENERATED_COMMENT,
    Mp4Writer,
    _colours,
    encode_mp4,
    h264_level,
    poster_jpeg,
    probe,
    read_frames,
)


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


@pytest.mark.parametrize("output_fps", [None, 24])
def test_encode_tags_the_stream_bt709_limited_range(output_fps: float | None) -> None:
    """Browsers assume BT.709 for HD video; the tags make every player decode with the right matrix."""
    info = probe(encode_mp4(_ramp(t=6), fps=12, output_fps=output_fps))
    assert info.pix_fmt == "yuv420p"
    assert (info.color_range, info.color_space, info.color_primaries, info.color_transfer) == (
        "tv",
        "bt709",
        "bt709",
        "bt709",
    )


_COLOURS = [(200, 40, 40), (30, 160, 60), (40, 60, 200), (128, 128, 128)]


def _patches(t: int = 6, h: int = 64, w: int = 32 * len(_COLOURS)) -> np.ndarray:
    frames = np.empty((t, h, w, 3), np.uint8)
    for k, colour in enumerate(_COLOURS):
        frames[:, :, 32 * k : 32 * (k + 1)] = colour
    return frames


def _patch_means(frames: np.ndarray) -> np.ndarray:
    """The mean colour of each patch's interior (away from chroma subsampling at the edges), per frame."""
    return np.stack([frames[:, 8:-8, 32 * k + 8 : 32 * k + 24].mean((1, 2)) for k in range(len(_COLOURS))], 1)


def _decode_bt709(data: bytes, h: int, w: int) -> np.ndarray:
    """The raw yuv420p planes turned to RGB with the BT.709 limited-range matrix, as a browser does."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.mp4"
        path.write_bytes(data)
        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ]
        raw = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.uint8)
    planes = raw.reshape(-1, h * w * 3 // 2).astype(np.float64)
    y = planes[:, : h * w].reshape(-1, h, w)
    cb, cr = (
        planes[:, h * w * (4 + i) // 4 : h * w * (5 + i) // 4].reshape(-1, h // 2, w // 2) for i in (0, 1)
    )
    cb, cr = (c.repeat(2, 1).repeat(2, 2) for c in (cb, cr))
    y, cb, cr = (y - 16) / 219, (cb - 128) / 224, (cr - 128) / 224
    kr, kb = 0.2126, 0.0722
    r, b = y + 2 * (1 - kr) * cr, y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.stack([r, g, b], -1) * 255, 0, 255)


@pytest.mark.parametrize(("fps", "output_fps"), [(24, None), (12, 24)])
def test_saturated_colours_survive_encoding(fps: float, output_fps: float | None) -> None:
    frames = _patches()
    data = encode_mp4(frames, fps=fps, output_fps=output_fps)
    expected = np.array(_COLOURS, float)
    as_browsers_decode = _patch_means(_decode_bt709(data, *frames.shape[1:3]))
    assert np.abs(as_browsers_decode - expected).max() < 4
    decoded = read_frames(data)  # ffmpeg reads the tags and converts with the same matrix
    assert np.abs(_patch_means(decoded.astype(float)) - expected).max() < 4


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


def test_probe_reports_untagged_and_partly_tagged_streams() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plain.mp4"  # ffmpeg's defaults: BT.601 and no colour tags
        writer = imageio_ffmpeg.write_frames(str(path), (64, 48), fps=24, macro_block_size=1)
        writer.send(None)
        writer.send(_ramp(t=1)[0])
        writer.close()
        info = probe(path)
    assert (info.pix_fmt, info.width, info.height) == ("yuv420p", 64, 48)
    assert (info.color_range, info.color_space, info.color_primaries, info.color_transfer) == (None,) * 4
    assert _colours("tv, bt709/unknown/unknown, progressive") == ("tv", "bt709", None, None)
    assert _colours("10 bpc, pc, bt2020nc/bt2020/smpte2084, top coded first (swapped)") == (
        "pc",
        "bt2020nc",
        "bt2020",
        "smpte2084",
    )


def _ffmpeg_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ffmpeg's own BT.709 limited-range conversion of one frame (swscale), for comparison."""
    h, w = rgb.shape[:2]
    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", "pipe:0",
         "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p", "-f", "rawvideo", "pipe:1"],
        input=rgb.tobytes(), capture_output=True, check=True,
    ).stdout  # fmt: skip
    y, c = h * w, h * w // 4
    planes = (out[:y], out[y : y + c], out[y + c :])
    shapes = [(h, w), (h // 2, w // 2), (h // 2, w // 2)]
    y_, cb, cr = (np.frombuffer(p, np.uint8).reshape(s) for p, s in zip(planes, shapes, strict=True))
    return y_, cb, cr


def test_rgb_to_yuv420_is_ffmpegs_bt709_limited_range() -> None:
    """The frames handed to x264 are made here: they must be what ffmpeg's conversion gives, on a real
    photo (the astronaut) and on the corners of the colour cube."""
    import skimage.data

    from models.video import rgb_to_yuv420

    photo = skimage.data.astronaut()[:256, :320]
    cube = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], np.uint8)
    corners = np.repeat(np.repeat(cube[None], 16, 0), 16, 1).reshape(16, 8 * 16, 3)  # flat 16×16 patches
    for rgb in (photo, np.ascontiguousarray(corners)):
        ours, theirs = rgb_to_yuv420(rgb), _ffmpeg_yuv420(rgb)
        for mine, ref, most in zip(ours, theirs, (1, 3, 3), strict=True):
            diff = mine.astype(int) - ref.astype(int)
            assert np.abs(diff).max() <= most and abs(diff.mean()) < 0.25
    # Unbiased: the chroma's mean is the exact conversion's (2×2 means of unrounded values, offset 128).
    kr, kb = 0.2126, 0.0722
    rgb = photo.reshape(-1, 3).astype(np.float64)
    exact_cb = (rgb @ np.array([-kr, -(1 - kr - kb), 1 - kb]) / (2 * (1 - kb)) * 224 / 255 + 128).mean()
    exact_cr = (rgb @ np.array([1 - kr, -(1 - kr - kb), -kb]) / (2 * (1 - kr)) * 224 / 255 + 128).mean()
    _, cb, cr = rgb_to_yuv420(np.ascontiguousarray(photo))
    assert abs(cb.mean() - exact_cb) < 0.05 and abs(cr.mean() - exact_cr) < 0.05
    y, cb, cr = rgb_to_yuv420(np.ascontiguousarray(corners))
    assert (y.min(), y.max(), cb.min(), cb.max(), cr.min(), cr.max()) == (16, 235, 16, 240, 16, 240)


def test_writer_streams_frames_and_matches_encode_mp4() -> None:
    """Frames written one at a time (the portrait animator's way) give the very same MP4 as a whole array."""
    from models.video import Mp4Writer

    frames = _ramp(t=10, w=65)  # an odd width: cropped, not stretched
    with Mp4Writer(65, 48, 24) as writer:
        for frame in frames:
            writer.write(frame)
        streamed = writer.finish()
    assert streamed == encode_mp4(frames, 24)
    assert probe(streamed).width == 64 and writer.frames == 10


def test_writer_left_early_stops_ffmpeg() -> None:
    """A cancel between frames leaves the writer early: its ffmpeg must not outlive it."""
    from models.video import Mp4Writer

    with pytest.raises(KeyboardInterrupt), Mp4Writer(64, 48, 24) as writer:
        writer.write(_ramp(t=1)[0])
        process = writer._process
        raise KeyboardInterrupt
    assert process is not None and process.poll() is not None
    with pytest.raises(ValueError, match="expected uint8"), Mp4Writer(64, 48, 24) as writer:
        writer.write(_ramp(t=1, w=32)[0])


def avc_profile_and_level(mp4: bytes) -> tuple[int, int]:
    """AVCProfileIndication and AVCLevelIndication from the MP4's avcC box (ISO 14496-15): what a player
    reads before it decodes a frame. 100 is High; level 40 is 4.0, 51 is 5.1."""
    at = mp4.index(b"avcC") + 4  # the box's payload: configurationVersion, profile, compatibility, level
    assert mp4[at] == 1
    return mp4[at + 1], mp4[at + 3]


@pytest.mark.parametrize(
    ("size", "fps", "level"),
    [
        ((64, 64), 24, "3.0"),
        ((720, 900), 24, "3.1"),
        ((1080, 1350), 24, "4.0"),  # an HD portrait: the long side at 1080
        ((1920, 1080), 30, "4.0"),
        ((1920, 1080), 60, "4.2"),
        ((3600, 2160), 24, "5.1"),
        ((3840, 2160), 24, "5.1"),  # 4K UHD
        ((2160, 3840), 30, "5.1"),
        ((3840, 2160), 60, "5.2"),
    ],
)
def test_the_level_is_the_lowest_that_fits_the_size_and_rate(
    size: tuple[int, int], fps: float, level: str
) -> None:
    assert h264_level(*size, fps).name == level


def test_past_level_5_2_is_refused() -> None:
    with pytest.raises(ValueError, match="past H.264 level 5.2"):
        h264_level(7680, 4320, 24)


@pytest.mark.parametrize(("size", "level"), [((1080, 1350), 40), ((3840, 2160), 51)])
def test_the_stream_states_its_level(size: tuple[int, int], level: int) -> None:
    w, h = size
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    frames = [np.broadcast_to(ramp + 3 * i, (h, w, 3)).clip(0, 255).astype(np.uint8) for i in range(3)]
    with Mp4Writer(w, h, 24) as writer:
        for f in frames:
            writer.write(f)
        mp4 = writer.finish()
    assert avc_profile_and_level(mp4) == (100, level)  # High profile at the size's level
    info = probe(mp4)
    assert (info.width, info.height, info.frame_count) == (w, h, 3)


def test_read_frames_shrinks_to_max_side_as_ffmpeg_hands_them_over() -> None:
    w, h = 640, 360
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    frames = np.stack(
        [np.broadcast_to(ramp + 10 * i, (h, w, 3)).clip(0, 255).astype(np.uint8) for i in range(6)]
    )
    mp4 = encode_mp4(frames, 24)
    small = read_frames(mp4, [1, 4], max_side=320)
    assert small.shape == (2, 180, 320, 3)  # aspect kept
    whole = read_frames(mp4, [1, 4])
    assert np.abs(small.astype(float) - whole[:, ::2, ::2].astype(float)).mean() < 3  # the same picture
    assert read_frames(mp4, [0], max_side=1920).shape == (1, h, w, 3)  # never enlarged
