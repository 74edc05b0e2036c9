"""Photo fitting (crop or pad around the face, never stretch), colour consistency, frame-rate conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data

from models.face import detect_face_box
from models.postprocess import fit_to_face, interpolate_fps, match_colors, output_frame_count


def _disk_photo(w: int, h: int, centre: tuple[int, int], r: int) -> Image.Image:
    """A textured grey photo with a red disk standing in for the face."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(90, 160, (h, w, 3), dtype=np.uint8))
    ImageDraw.Draw(img).ellipse(
        (centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r), fill=(255, 0, 0)
    )
    return img


def _red_bbox(img: Image.Image) -> tuple[int, int, int, int]:
    a = np.asarray(img).astype(int)
    mask = (a[..., 0] > 200) & (a[..., 1] < 60) & (a[..., 2] < 60)
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("size", [(64, 128), (128, 64), (96, 96), (256, 144)])
def test_fit_keeps_the_face_whole_and_round(size: tuple[int, int]) -> None:
    photo = _disk_photo(600, 400, centre=(470, 110), r=40)  # face off-centre, near the top right
    fit = fit_to_face(photo, size, face_box=(430, 70, 510, 150))
    assert fit.image.size == size
    x0, y0, x1, y1 = _red_bbox(fit.image)
    assert x0 > 0 and y0 > 0 and x1 < size[0] and y1 < size[1]  # the whole face is in the frame
    assert abs((x1 - x0) / (y1 - y0) - 1) < 0.12  # a circle stays a circle: no stretch
    assert abs((x1 - x0) - 80 * fit.scale) <= 2  # one scale factor for both axes


def test_fit_pads_when_a_crop_would_cut_the_face() -> None:
    photo = _disk_photo(300, 300, centre=(150, 150), r=140)  # the face fills the photo
    fit = fit_to_face(photo, (256, 128), face_box=(10, 10, 290, 290))
    assert fit.mode == "pad" and fit.scale == pytest.approx(128 / 300)
    px0 = round(-fit.box[0] * fit.scale)  # the sharp, whole photo sits here over a blurred copy
    assert px0 >= 0 and px0 + 128 <= 256
    x0, y0, x1, y1 = _red_bbox(fit.image.crop((px0, 0, px0 + 128, 128)))
    assert abs((x1 - x0) / (y1 - y0) - 1) < 0.05  # round
    assert y1 - y0 >= 116  # the whole disk, scaled to the frame height


def test_fit_zooms_in_on_a_small_face_and_centres_it() -> None:
    photo = _disk_photo(800, 800, centre=(300, 250), r=20)
    fit = fit_to_face(photo, (128, 128), face_box=(280, 230, 320, 270))
    assert fit.mode == "crop" and fit.scale > 128 / 800  # zoomed past the plain "cover" scale
    x0, y0, x1, y1 = _red_bbox(fit.image)
    assert abs((x0 + x1) / 2 - 64) < 4 and abs((y0 + y1) / 2 - 64) < 4


def test_face_detection_on_real_portraits(portrait: Image.Image) -> None:
    box = detect_face_box(portrait)  # Grace Hopper, 512×600
    assert box is not None
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    assert 150 < cx < 360 and 100 < cy < 330 and 100 < box[2] - box[0] < 320
    assert detect_face_box(Image.new("RGB", (200, 200), (128, 128, 128))) is None
    fit = fit_to_face(Image.fromarray(data.astronaut()), (64, 112))
    assert fit.image.size == (64, 112) and fit.face_box is not None


def test_a_machine_without_the_face_detector_fits_without_a_face_box(
    portrait: Image.Image, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where mediapipe cannot be imported (an image built without it), the photo is centred: no crash."""
    import sys

    import models.face

    monkeypatch.setattr(models.face, "_box_detector", None)
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # `import mediapipe` raises ImportError
    assert detect_face_box(portrait) is None
    assert "no face detector" in caplog.text
    fit = fit_to_face(portrait, (64, 112))
    assert fit.image.size == (64, 112) and fit.face_box is None


def test_match_colors_removes_a_cast_and_keeps_its_bounds() -> None:
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((96, 96)))
    cast = photo.astype(float) * 0.8 + np.array([18.0, 6.0, -4.0]) + 10  # warm, with less contrast
    noise = np.random.default_rng(4).normal(0, 2, (8, 96, 96, 3))
    frames = np.clip(cast + noise, 0, 255).astype(np.uint8)
    out = match_colors(frames, photo)
    mean = lambda v: v.reshape(-1, 3).mean(0)  # noqa: E731
    assert np.abs(mean(out) - mean(photo)).max() < 2.5
    assert np.abs(out[0].astype(int) - photo).mean() < 4  # the first frame looks like the photo
    assert np.array_equal(match_colors(frames, photo, strength=0.0), frames)
    half = match_colors(frames, photo, strength=0.5)
    assert np.abs(mean(half) - (mean(frames) + mean(photo)) / 2).max() < 2.5
    flat = (photo * 0.2 + 100).astype(np.uint8)[None].repeat(2, 0)  # little contrast: gain capped at 1.5
    luma = lambda v: (v.astype(float) @ [0.299, 0.587, 0.114]).std()  # noqa: E731
    assert luma(flat) * 1.45 < luma(match_colors(flat, photo, max_gain=1.5)) < luma(flat) * 1.5 + 0.5


def test_interpolate_fps_moves_content_instead_of_cross_fading() -> None:
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)  # 32×32 patch
    frames = np.full((4, 96, 160, 3), 40, np.uint8)
    for i in range(4):  # the patch moves 12 px right per frame
        frames[i, 32:64, 20 + 12 * i : 52 + 12 * i] = texture
    out = interpolate_fps(frames, 8, 24)
    assert out.shape == (output_frame_count(4, 8, 24), 96, 160, 3) == (12, 96, 160, 3)
    assert np.array_equal(out[0], frames[0]) and np.array_equal(out[3], frames[1])
    middle = out[1]  # one third of the way from frame 0 to frame 1: the patch should sit 4 px right
    expected = np.full_like(frames[0], 40)
    expected[32:64, 24:56] = texture
    crossfade = (frames[0] * (2 / 3) + frames[1] * (1 / 3)).astype(np.uint8)
    err = np.abs(middle.astype(int) - expected).mean()
    err_crossfade = np.abs(crossfade.astype(int) - expected).mean()
    assert err < err_crossfade / 2


def test_interpolate_fps_same_rate_is_identity() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(interpolate_fps(frames, 24, 24), frames)


@pytest.mark.parametrize(
    ("w", "h", "src_fps", "dst_fps"),
    [
        (832, 480, 16, 24),  # Wan's native sizes
        (480, 832, 16, 24),
        (1024, 576, 7, 24),  # SVD's
        (576, 1024, 7, 24),
        (720, 480, 8, 24),
        (768, 512, 24, 24),  # already at the output rate: passes through
    ],
)
def test_interpolate_fps_at_production_sizes(w: int, h: int, src_fps: int, dst_fps: int) -> None:
    """The flow is computed on shrunk frames: upsampled, it must have the frames' exact size again."""
    rng = np.random.default_rng(2)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    frames = np.stack([np.roll(base, 3 * i, axis=1) for i in range(3)])
    out = interpolate_fps(frames, src_fps, dst_fps)
    assert out.shape == (output_frame_count(3, src_fps, dst_fps), h, w, 3)


def test_match_colors_keeps_a_static_background_steady_while_content_moves() -> None:
    """One transform per clip: a moving, strongly coloured object changes every frame's statistics, but
    the background it does not cover must keep its colour, while the clip's cast moves to the photo's."""
    rng = np.random.default_rng(3)
    h, w = 96, 128
    background = rng.integers(70, 190, (h // 4, w // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    photo = background.copy()
    photo[40:56, 8:24] = (30, 60, 230)  # the object where the photo has it
    covered = np.zeros((h, w), bool)
    frames = []
    for i in range(6):  # the object moves right and grows from 16 to 41 px
        f = background.copy()
        s = 16 + 5 * i
        y0, x0 = 40 - 4 * i, 8 + 12 * i
        f[y0 : y0 + s, x0 : x0 + s] = (30, 60, 230)
        covered[y0 : y0 + s, x0 : x0 + s] = True
        cast = f.astype(float) * 0.85 + np.array([22.0, 8.0, -10.0])  # a warm cast with less contrast
        frames.append(np.clip(cast, 0, 255).astype(np.uint8))
    frames_arr = np.stack(frames)
    static = ~covered
    out = match_colors(frames_arr, photo)
    bg = out[:, static].astype(int)  # (T, N, 3): the pixels that never change in the input
    assert np.array_equal(frames_arr[:, static], np.broadcast_to(frames_arr[0, static], bg.shape))
    assert np.abs(bg - bg[0]).max() <= 1  # no flicker
    before = np.abs(frames_arr[:, static].astype(int) - photo[static]).mean()
    after = np.abs(bg - photo[static]).mean()
    assert after < before / 3  # the cast is (mostly) gone
