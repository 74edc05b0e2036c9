"""Decoding uploads is bounded: a few at a time, within a memory budget, at reduced size; a cut-off JPEG
is refused, not stored as half a photo."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import anyio
import matplotlib.cbook as cbook
import numpy as np
import pytest
import skimage.data
from fastapi.testclient import TestClient
from PIL import Image

import migrations
from app.core.config import Settings
from app.core.service.photos import analyse_upload, budget_of
from app.core.uploads import MAX_STORED_SIDE, Photo, decode_photo, finish_photo, inspect_photo, jpeg_end
from app.web.main import create_app
from tests.app.api_helpers import SCRAPE, jpeg, make_settings, png

CHECK = "/api/v1/photo-check"


def read_photo(data: bytes, *, max_pixels: int, min_side: int) -> Photo:
    """Validate and normalise an upload in one call, as the job service does in two."""
    return finish_photo(inspect_photo(data, max_pixels=max_pixels, min_side=min_side), data)


def _check(client: TestClient, data: bytes) -> tuple[int, dict]:
    r = client.post(CHECK, files={"photo": ("p.jpg", data, "image/jpeg")})
    return r.status_code, r.json() | {"_headers": dict(r.headers)}


def _sources() -> dict[str, bytes]:
    hopper = cbook.get_sample_data("grace_hopper.jpg").read()  # a real camera-made file
    astronaut = Image.fromarray(skimage.data.astronaut())
    return {
        "hopper": hopper,
        "astronaut": jpeg(astronaut, quality=90),
        "astronaut-progressive": jpeg(astronaut, quality=90, progressive=True),
    }


SOURCES = _sources()


def _client_for(tmp_path: Path, **overrides: object) -> Callable[[], TestClient]:
    s = make_settings(tmp_path, **overrides)
    migrations.upgrade(s.resolved_database_url)
    return lambda: TestClient(create_app(s))


# A progressive file cut late (in its last AC refinement scans) still decodes to the whole picture, a
# little softer; the cuts tested for it fall in the scans that carry the picture itself.
CUTS = {
    "hopper": (0.1, 0.5, 0.9, 0.99),
    "astronaut": (0.1, 0.5, 0.9, 0.99),
    "astronaut-progressive": (0.1, 0.3, 0.5),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_cut_off_jpegs_are_unreadable_even_with_an_end_marker_added(client: TestClient, name: str) -> None:
    data = SOURCES[name]
    for frac in CUTS[name]:
        cut = data[: int(len(data) * frac)]
        for tail in (b"", b"\xff\xd9", b"\xff\xd9" + b"\x00" * 64, b"\x00" * 4096):
            status, body = _check(client, cut + tail)
            assert (status, body["error"]["code"]) == (400, "unreadable_image"), (frac, tail[:4], body)
    assert client.get("/api/v1/jobs").json()["jobs"] == []


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_whole_jpegs_with_bytes_after_the_end_marker_pass(client: TestClient, name: str) -> None:
    data = SOURCES[name]
    trailers = [
        b"",
        b"\x00" * 1000,  # padding some cameras write
        b"SEFH\x00\x00garbage trailer written by a phone",
        jpeg(Image.new("RGB", (160, 120), "red")),  # a second image after the first (MPF-style)
    ]
    for trailer in trailers:
        status, body = _check(client, data + trailer)
        assert status == 200, (trailer[:8], body)


def test_jpeg_end_skips_segments_by_length() -> None:
    data = SOURCES["hopper"]
    eoi = jpeg_end(data)
    assert eoi == len(data) - 2
    # An APP segment holding a whole little JPEG (an EXIF thumbnail) does not end the outer one.
    thumb = jpeg(Image.new("RGB", (16, 16), "blue"))
    app1 = b"\xff\xe1" + (len(thumb) + 2).to_bytes(2, "big") + thumb
    nested = data[:2] + app1 + data[2:]
    assert jpeg_end(nested) == len(nested) - 2
    assert jpeg_end(nested[: len(nested) // 2]) is None
    assert read_photo(nested, max_pixels=10**8, min_side=16).width == 512


def test_large_photos_are_decoded_small_and_shrunk_before_any_conversion() -> None:
    rng = np.random.default_rng(3)
    noise = Image.fromarray(rng.integers(0, 255, (1500, 6000, 3), dtype=np.uint8))
    big_jpeg = jpeg(noise, quality=80)  # a short side under 1600 px: no 4K, stored at 2048 px
    pending = inspect_photo(big_jpeg, max_pixels=40_000_000, min_side=64)
    assert pending.image.size == (3000, 750)  # libjpeg decodes at 1/2 scale: draft() before load
    assert pending.decode_bytes == 3000 * 750 * 4 * (1 + 3)  # counted at the drafted size
    assert decode_photo(pending, big_jpeg).size == (3000, 750)
    assert read_photo(big_jpeg, max_pixels=40_000_000, min_side=64).width == 2048

    # A photo with the pixels for 4K is drafted only as far as keeps the 4K box, and stored in it.
    grain = Image.fromarray(rng.integers(0, 255, (4800, 8000, 3), dtype=np.uint8))
    uhd_jpeg = jpeg(grain, quality=70)
    pending = inspect_photo(uhd_jpeg, max_pixels=40_000_000, min_side=64)
    assert pending.image.size == (4000, 2400)  # 1/2 scale still covers 3840 by 2160
    assert decode_photo(pending, uhd_jpeg).size == (3600, 2160)  # then into the 4K box at once
    photo = read_photo(uhd_jpeg, max_pixels=40_000_000, min_side=64)
    assert (photo.width, photo.height) == (3600, 2160)  # the 4K box: short side 2160, aspect kept
    # Under twice the box, libjpeg cannot shrink it: it is decoded whole and resized into the box at once,
    # so the steps after hold 8 megapixels, not 33, and it fits the default decode budget (512 MB).
    ramp = np.linspace(0, 255, 7600, dtype=np.uint8)
    wide = jpeg(Image.fromarray(np.dstack([np.tile(ramp, (4300, 1))] * 3)), quality=80)
    pending = inspect_photo(wide, max_pixels=40_000_000, min_side=64)
    assert pending.image.size == (7600, 4300)
    assert 7600 * 4300 * 4 < pending.decode_bytes < 320 * 2**20 < 512 * 2**20
    assert decode_photo(pending, wide).size == (3818, 2160)

    big_png = png(noise.resize((9000, 600)))
    pending = inspect_photo(big_png, max_pixels=40_000_000, min_side=64)
    small = decode_photo(pending, big_png)
    assert small.size == (2250, 150)  # reduced by 4 at once: long side in [MAX, 2×MAX)
    assert MAX_STORED_SIDE <= max(small.size) < 2 * MAX_STORED_SIDE
    photo = read_photo(big_png, max_pixels=40_000_000, min_side=64)
    assert (photo.width, photo.height) == (2048, 137)


def test_shrunk_photos_keep_orientation_and_16_bit_scaling() -> None:
    upright = Image.new("RGB", (2400, 4400), "white")
    upright.paste((200, 0, 0), (0, 0, 2400, 1100))  # red on top
    sensor = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone stores, plus orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = read_photo(png(sensor, exif=exif.tobytes()), max_pixels=40_000_000, min_side=64)
    assert (photo.width, photo.height) == (2095, 3840)  # shrunk into the 4K box, upright
    top = np.asarray(photo.image)[:100].reshape(-1, 3).mean(0)
    assert top[0] > 150 and top[1] < 60, top  # still red on top: the orientation survived the shrink

    ramp = np.tile(np.linspace(0, 65535, 4400), (300, 1)).astype(np.uint16)
    deep = png(Image.fromarray(ramp))
    assert Image.open(io.BytesIO(deep)).mode.startswith("I;16")
    arr = np.asarray(read_photo(deep, max_pixels=40_000_000, min_side=64).image, np.float32)
    assert arr[:, :8].mean() < 20 and arr[:, -8:].mean() > 235  # scaled to 8 bits, not clipped


def test_a_photo_larger_than_the_whole_decode_budget_is_413(tmp_path: Path) -> None:
    make_client = _client_for(tmp_path, decode_memory_mb=16)
    with make_client() as client:
        data = png(Image.new("RGB", (3000, 2000), "grey"))
        status, body = _check(client, data)
        assert status == 413 and body["error"]["code"] == "too_many_pixels"
        assert "memory" in body["error"]["message"] and "16 MB" in body["error"]["message"]
        small = jpeg(Image.new("RGB", (200, 200), "grey"))
        assert _check(client, small)[0] == 200


def test_an_upload_that_cannot_get_decode_memory_soon_is_503_with_retry_after(tmp_path: Path) -> None:
    make_client = _client_for(tmp_path, decode_memory_mb=64, decode_wait_s=0.3)
    settings = Settings(_env_file=None, data_dir=tmp_path, decode_memory_mb=64, decode_wait_s=0.3)
    budget = budget_of(settings)  # the web process's own budget: other uploads hold it
    data = png(Image.new("RGB", (2200, 1600), "grey"))  # ~30 MB to decode: a large one
    with make_client() as client:
        with budget.hold(40 * 2**20):  # another upload is being decoded
            status, body = _check(client, data)
            assert status == 503 and body["error"]["code"] == "server_busy", body
            assert body["_headers"]["retry-after"] == "1"
            assert client.get("/healthz").status_code == 200
        assert _check(client, data)[0] == 200  # released: the same photo goes through
        assert budget.in_use == 0
        metrics = client.get("/metrics", headers=SCRAPE).text
        assert 'vivify_uploads_rejected_total{code="server_busy"} 1.0' in metrics


def test_large_decodes_run_at_most_decode_concurrency_at_once(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, decode_concurrency=1, decode_wait_s=60)
    budget = budget_of(settings)
    photos = [png(Image.new("RGB", (2600 + 10 * i, 2000), (i * 40, 90, 90))) for i in range(4)]
    widths: list[int] = []

    async def main() -> None:
        async def one(data: bytes) -> None:
            widths.append((await analyse_upload(data, settings)).photo.width)

        async with anyio.create_task_group() as tg:
            for data in photos:
                tg.start_soon(one, data)

    anyio.run(main)
    assert sorted(widths) == [2600, 2610, 2620, 2630]  # 4K-eligible: kept whole (inside 3840 by 2160)
    assert budget.peak_slots == 1 and budget.in_use == 0
