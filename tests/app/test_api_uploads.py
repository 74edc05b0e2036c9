"""A corpus of bad uploads, each answered with the right 4xx, and awkward good ones accepted properly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.config import Settings
from app.core.storage import photo_key
from app.web.main import create_app
from tests.app.api_helpers import SCRAPE, jpeg, make_settings, png, post_job


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int) -> bytes:
    """A real greyscale PNG of side×side black pixels: tiny on disk, huge when decoded."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_claiming_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header claims another size (the pixels are never reached)."""
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9 :]


def animated_gif() -> bytes:
    frames = [Image.new("P", (80, 80), i * 40) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (80, 80), (i * 80, 0, 0)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(portrait_jpeg: bytes) -> dict[str, tuple[bytes, int, str]]:
    """name → (bytes, expected status, expected error code)."""
    return {
        "empty": (b"", 400, "empty_file"),
        "text renamed .jpg": (b"hello, I am a text file\n" * 20, 415, "unsupported_type"),
        "html renamed .jpg": (
            b"<!doctype html><html><script>alert(1)</script></html>",
            415,
            "unsupported_type",
        ),
        "svg renamed .jpg": (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="900" height="900">'
            b'<rect width="900" height="900"/></svg>',
            415,
            "unsupported_type",
        ),
        "truncated jpeg": (portrait_jpeg[: len(portrait_jpeg) // 2], 400, "unreadable_image"),
        "jpeg header only": (portrait_jpeg[:600], 400, "unreadable_image"),
        "png decompression bomb (8000², 64 MP)": (png_bomb(8000), 413, "too_many_pixels"),
        "jpeg claiming 20000×20000": (
            jpeg_claiming_size(portrait_jpeg, 20000, 20000),
            413,
            "too_many_pixels",
        ),
        "animated gif": (animated_gif(), 415, "unsupported_type"),
        "animated png": (animated("PNG"), 415, "unsupported_type"),
        "animated webp": (animated("WEBP"), 415, "unsupported_type"),
        "heic": (
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200,
            415,
            "unsupported_type",
        ),
        "too small (32×32)": (png(Image.new("RGB", (32, 32), "white")), 422, "photo_too_small"),
        "random bytes": (np.random.default_rng(1).bytes(5000), 415, "unsupported_type"),
        "png magic then garbage": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, 400, "unreadable_image"),
    }


CASES = [
    "empty",
    "text renamed .jpg",
    "html renamed .jpg",
    "svg renamed .jpg",
    "truncated jpeg",
    "jpeg header only",
    "png decompression bomb (8000², 64 MP)",
    "jpeg claiming 20000×20000",
    "animated gif",
    "animated png",
    "animated webp",
    "heic",
    "too small (32×32)",
    "random bytes",
    "png magic then garbage",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_upload_gets_the_right_4xx_and_the_server_stays_healthy(
    client: TestClient, corpus: dict[str, tuple[bytes, int, str]], name: str
) -> None:
    data, status, code = corpus[name]
    for path in ("/api/v1/jobs", "/api/v1/photo-check"):
        r = post_job(client, data, filename="photo.jpg", content_type="image/jpeg", path=path)
        assert r.status_code == status, (path, r.text)
        body = r.json()
        assert body["error"]["code"] == code and len(body["error"]["message"]) > 10
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/jobs").json()["jobs"] == []
    assert client.get("/api/v1/quota").json()["used"] == 0
    scraped = client.get("/metrics", headers=SCRAPE).text
    assert f'vivify_uploads_rejected_total{{code="{code}"}} 2.0' in scraped


def stored_photo(client: TestClient, job_id: str) -> Image.Image:
    return Image.open(io.BytesIO(client.app.state.store.get(photo_key(job_id))))


def accept(client: TestClient, data: bytes, **kw: str) -> Image.Image:
    r = post_job(client, data, **kw)
    assert r.status_code == 202, r.text
    img = stored_photo(client, r.json()["id"])
    assert img.format == "JPEG" and img.mode == "RGB"
    return img


def test_exif_rotated_photo_is_stored_upright(client: TestClient, portrait: Image.Image) -> None:
    upright = portrait.resize((96, 112))
    # What a phone writes: the sensor's pixels (rotated) plus "rotate 90° CW to display" (orientation 6).
    sensor = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    img = accept(client, jpeg(sensor, quality=95, exif=exif.tobytes()))
    assert img.size == upright.size
    diff = np.abs(np.asarray(img, np.float32) - np.asarray(upright, np.float32)).mean()
    assert diff < 8, diff  # same picture (JPEG noise only), not a rotated one
    assert not img.getexif()


def test_metadata_is_dropped(client: TestClient, portrait: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.0)}  # GPS IFD
    src = jpeg(portrait.resize((100, 100)), exif=exif.tobytes(), comment=b"private note")
    assert b"SecretCam" in src
    r = post_job(client, src)
    raw = client.app.state.store.get(photo_key(r.json()["id"]))
    assert b"SecretCam" not in raw and b"private note" not in raw and b"Exif" not in raw


def test_16_bit_png_is_scaled_not_clipped(client: TestClient) -> None:
    ramp = np.tile(np.linspace(0, 65535, 128), (96, 1)).astype(np.uint16)
    data = png(Image.fromarray(ramp))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    arr = np.asarray(accept(client, data, filename="deep.png", content_type="image/png"), np.float32)
    assert arr[:, :8].mean() < 20 and arr[:, -8:].mean() > 235 and 100 < arr[:, 60:68].mean() < 155


def test_cmyk_jpeg_becomes_rgb_with_its_colours(client: TestClient) -> None:
    red = Image.new("CMYK", (96, 96), (0, 255, 255, 0))
    arr = np.asarray(accept(client, jpeg(red, quality=95)), np.float32).reshape(-1, 3).mean(0)
    assert arr[0] > 200 and arr[1] < 60 and arr[2] < 60, arr


def test_palette_png_with_transparency_is_flattened_on_white(client: TestClient) -> None:
    img = Image.new("P", (80, 80), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (20, 20, 60, 60))
    img.info["transparency"] = 0
    arr = np.asarray(accept(client, png(img, transparency=0), content_type="image/png"), np.float32)
    assert arr[5, 5].min() > 240  # transparent → white
    assert arr[40, 40, 0] > 200 and arr[40, 40, 1] < 60  # red stays red


def test_greyscale_and_webp_are_accepted(client: TestClient, portrait: Image.Image) -> None:
    assert accept(client, png(portrait.convert("L").resize((80, 90)))).size == (80, 90)
    buf = io.BytesIO()
    portrait.resize((80, 90)).save(buf, "WEBP", quality=80)
    assert accept(client, buf.getvalue(), filename="x.webp", content_type="image/webp").size == (80, 90)


def test_format_comes_from_content_not_name_or_type(client: TestClient, small_portrait_jpeg: bytes) -> None:
    assert (
        post_job(client, small_portrait_jpeg, filename="notes.txt", content_type="text/plain").status_code
        == 202
    )
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    assert post_job(client, svg, filename="x.jpg", content_type="image/jpeg").status_code == 415


def test_hostile_file_name_is_ignored(
    client: TestClient, settings: Settings, small_portrait_jpeg: bytes
) -> None:
    before = {p for p in settings.data_dir.rglob("*")}
    name = "../../../etc/passwd\x01\x7f\x1b[31m..\\..\\evil.jpg"
    r = post_job(client, small_portrait_jpeg, filename=name)
    assert r.status_code == 202
    job_id = r.json()["id"]
    created = {p for p in settings.data_dir.rglob("*")} - before
    objects = (settings.data_dir / "objects").resolve()
    photos = [p for p in created if p.is_file() and p.suffix == ".jpg"]
    assert [p.resolve() for p in photos] == [objects / photo_key(job_id)]
    assert "passwd" not in r.text and "evil" not in r.text


def test_oversized_upload_is_413(tmp_path: Path, portrait_jpeg: bytes) -> None:
    import migrations

    s = make_settings(tmp_path, max_upload_bytes=20_000)
    migrations.upgrade(s.resolved_database_url)
    with TestClient(create_app(s)) as c:
        assert len(portrait_jpeg) > 20_000
        r = post_job(c, portrait_jpeg)
        assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
        # Just over the limit: the declared length passes the early check, the counted file does not.
        r = post_job(c, portrait_jpeg[:20_001])
        assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
        small = jpeg(Image.new("RGB", (100, 100), "gray"))
        assert post_job(c, small).status_code == 202


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"consent": ""}, 422, "consent_required"),
        ({"consent": "false"}, 422, "consent_required"),
        ({"motion": "do a backflip"}, 422, "unknown_motion"),
        ({"motion": "x" * 201}, 422, "invalid_motion"),
        ({"motion": "smile\x00now"}, 422, "invalid_motion"),
        ({"motion": "y" * 100_000}, 413, "field_too_large"),
        ({"seed": "abc"}, 422, "invalid_seed"),
        ({"seed": "-1"}, 422, "invalid_seed"),
        ({"seed": "1.5"}, 422, "invalid_seed"),
        ({"seed": str(2**31)}, 422, "invalid_seed"),
        ({"seed": "9" * 5000}, 422, "invalid_seed"),
        ({f"extra{i}": "v" for i in range(20)}, 422, "too_many_fields"),
    ],
)
def test_bad_form_fields(
    client: TestClient, small_portrait_jpeg: bytes, fields: dict[str, str], status: int, code: str
) -> None:
    r = post_job(client, small_portrait_jpeg, **fields)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_unknown_motion_lists_understood_words(client: TestClient, small_portrait_jpeg: bytes) -> None:
    r = post_job(client, small_portrait_jpeg, motion="moonwalk please")
    message = r.json()["error"]["message"]
    assert "moonwalk" in message and "smile" in message and "left" in message


def test_motion_presets_and_text_are_accepted(client: TestClient, small_portrait_jpeg: bytes) -> None:
    motions = client.get("/api/v1/motions").json()
    assert motions["default"] == "auto" and "smile" in motions["words"]
    assert {p["name"] for p in motions["presets"]} >= {"auto", "gentle", "smile", "nod"}
    r = post_job(client, small_portrait_jpeg, motion="  nod\n slowly ")
    assert r.status_code == 202 and r.json()["motion"] == "nod slowly"


def test_malformed_requests(client: TestClient, small_portrait_jpeg: bytes) -> None:
    no_photo = client.post("/api/v1/jobs", data={"consent": "true"})
    assert no_photo.status_code == 422 and no_photo.json()["error"]["code"] == "missing_photo"
    as_text = client.post("/api/v1/jobs", data={"consent": "true", "photo": "abc"})
    assert as_text.status_code == 422
    as_json = client.post("/api/v1/jobs", json={"consent": True})
    assert as_json.status_code == 415
    bad_boundary = client.post(
        "/api/v1/jobs",
        content=b'--zzz\r\nContent-Disposition: form-data; name="photo"\r\n\r\n' + b"\x00" * 50,
        headers={"content-type": "multipart/form-data"},
    )
    assert bad_boundary.status_code == 400 and bad_boundary.json()["error"]["code"] == "malformed_form"
    two = client.post(
        "/api/v1/jobs",
        data={"consent": "true"},
        files=[("photo", ("a.jpg", small_portrait_jpeg)), ("photo", ("b.jpg", small_portrait_jpeg))],
    )
    assert two.status_code == 422 and two.json()["error"]["code"] == "too_many_fields"
    bad_length = client.post(
        "/api/v1/jobs",
        content=b"x",
        headers={"content-type": "multipart/form-data; boundary=a", "content-length": "abc"},
    )
    assert bad_length.status_code in (400, 422)
    assert client.get("/healthz").status_code == 200


def test_photo_check_reports_without_creating_a_job(client: TestClient, small_portrait_jpeg: bytes) -> None:
    r = client.post("/api/v1/photo-check", files={"photo": ("a.jpg", small_portrait_jpeg, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and body["photo"]["width"] == 109 and body["photo"]["height"] == 128
    assert client.get("/api/v1/jobs").json()["jobs"] == []
    assert client.get("/api/v1/quota").json()["used"] == 0
