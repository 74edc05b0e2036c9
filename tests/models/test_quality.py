"""The photo check: a score and plain-language tips for face, sharpness/resolution and lighting."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image, ImageEnhance, ImageFilter

from models.quality import NO_FACE_MESSAGE, check_photo


@pytest.fixture(scope="module")
def full_size() -> Image.Image:
    """The 512x600 original: a 256-px thumbnail is rightly judged low-resolution."""
    return Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")


def test_a_good_portrait_scores_good(full_size: Image.Image) -> None:
    report = check_photo(full_size)
    json.dumps(report)  # JSON-serialisable as is
    assert set(report) >= {"score", "verdict", "faces", "face", "sharpness", "lighting", "resolution", "tips"}
    assert report["faces"] == 1 and report["face"]["found"] is True
    assert report["score"] >= 75 and report["verdict"] == "good"
    assert 0.2 < report["face"]["size_ratio"] < 0.6
    assert report["face"]["visibility"] > 0.9
    assert report["tips"] and all(isinstance(t, str) for t in report["tips"])


def test_greyscale_and_sepia_photos_are_checked(grey_portrait: Image.Image, sepia_portrait) -> None:
    for photo in (grey_portrait, sepia_portrait):
        report = check_photo(photo)
        assert report["faces"] == 1 and report["verdict"] != "poor"  # 256 px: fair, for resolution


def test_no_face_is_a_low_score_and_a_tip_not_an_error(no_face_photo: Image.Image) -> None:
    report = check_photo(no_face_photo)
    assert report["faces"] == 0 and report["face"] == {"found": False}
    assert report["verdict"] == "poor"
    assert report["tips"].count(NO_FACE_MESSAGE) == 1


def test_blur_lowers_sharpness_and_says_so(grace_hopper: Image.Image) -> None:
    sharp = check_photo(grace_hopper)
    blurred = check_photo(grace_hopper.filter(ImageFilter.GaussianBlur(3)))
    assert blurred["sharpness"]["score"] < sharp["sharpness"]["score"] - 30
    assert blurred["score"] < sharp["score"] - 20
    assert any("blurry" in t for t in blurred["tips"])


def test_dark_photo_gets_a_lighting_tip(grace_hopper: Image.Image) -> None:
    dark = check_photo(ImageEnhance.Brightness(grace_hopper).enhance(0.3))
    assert dark["lighting"]["exposure"] < 0.25
    assert dark["score"] < check_photo(grace_hopper)["score"]
    assert any("dark" in t for t in dark["tips"])


def test_uneven_light_across_the_face(grace_hopper: Image.Image) -> None:
    arr = np.asarray(grace_hopper).copy()
    arr[:, : arr.shape[1] // 2] = (arr[:, : arr.shape[1] // 2] * 0.35).astype(np.uint8)
    report = check_photo(Image.fromarray(arr))
    assert report["lighting"]["evenness"] < 0.6
    assert any("one side" in t.lower() for t in report["tips"])


def test_a_thumbnail_is_fair_not_good(grace_hopper: Image.Image, full_size: Image.Image) -> None:
    assert check_photo(grace_hopper)["resolution"]["score"] < check_photo(full_size)["resolution"]["score"]


def test_small_face_gets_a_resolution_tip(small_portrait: Image.Image, grace_hopper: Image.Image) -> None:
    small = check_photo(small_portrait)
    assert small["resolution"]["face_px"] < 100
    assert small["resolution"]["score"] < check_photo(grace_hopper)["resolution"]["score"]
    assert any("pixels" in t or "small" in t for t in small["tips"])


def test_face_cut_off_by_the_edge(full_size: Image.Image) -> None:
    w, h = full_size.size
    cut = full_size.crop((0, 0, w, int(h * 0.42)))  # chin and mouth cut off
    report = check_photo(cut)
    if report["faces"]:  # a half face may or may not be found; either way the score must drop
        assert report["face"]["in_frame"] < 0.97
    assert report["score"] < check_photo(full_size)["score"] - 15


def test_safe_from_several_threads(grace_hopper: Image.Image, astronaut: Image.Image) -> None:
    expected = {id(p): check_photo(p)["score"] for p in (grace_hopper, astronaut)}
    results: list[bool] = []

    def work(photo: Image.Image) -> None:
        results.extend(check_photo(photo)["score"] == expected[id(photo)] for _ in range(3))

    threads = [threading.Thread(target=work, args=(p,)) for p in (grace_hopper, astronaut) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results and all(results)


def test_warm_up_then_check(grace_hopper: Image.Image) -> None:
    from models.quality import warm_up

    warm_up()
    assert check_photo(grace_hopper)["faces"] == 1
