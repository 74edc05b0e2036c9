"""The clip's length (duration_s, 3-10 s) and size (resolution, hd or 4k) through the API: stored on the
job, carried by "again", offered by the photo check, and refused with a clear 422 when they cannot be."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.core.tables import Job
from tests.app.api_helpers import broker_messages, finish_job, jpeg, post_job


@pytest.fixture(scope="module")
def large_portrait_jpeg(portrait: Image.Image) -> bytes:
    """Grace Hopper at 1600×1875: the smallest photo offered 4K (short side 1600 px)."""
    return jpeg(portrait.resize((1600, 1875), Image.Resampling.LANCZOS), quality=88)


def _refusal(r: object) -> dict[str, str]:
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    return r.json()["error"]  # type: ignore[attr-defined,no-any-return]


def test_a_job_stores_the_length_and_size_it_was_asked_for(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    plain = post_job(client, small_portrait_jpeg).json()
    assert (plain["duration_s"], plain["resolution"]) == (4.0, "hd")
    long = post_job(client, small_portrait_jpeg, motion="nod", duration_s="7.5", resolution=" HD ")
    assert long.status_code == 202, long.text
    assert (long.json()["duration_s"], long.json()["resolution"]) == (7.5, "hd")
    # A 7.5 s clip plays its motion twice over, and its plan says so.
    assert long.json()["plan"]["description"].endswith("twice over"), long.json()["plan"]
    with app.state.sessions() as session:
        row = session.get(Job, long.json()["id"])
        assert row is not None and (row.duration_s, row.resolution) == (7.5, "hd")
    assert client.get(long.json()["urls"]["self"]).json()["duration_s"] == 7.5


@pytest.mark.parametrize("sent", ["2.9", "10.1", "0", "abc", "4.25", "nan", "-4", "1e1"])
def test_a_length_outside_3_to_10_seconds_is_a_422(
    client: TestClient, settings: object, small_portrait_jpeg: bytes, sent: str
) -> None:
    error = _refusal(post_job(client, small_portrait_jpeg, duration_s=sent))
    assert error["code"] == "invalid_duration"
    assert "from 3 to 10 seconds" in error["message"]
    assert broker_messages(settings) == []  # type: ignore[arg-type]


def test_sizes_other_than_hd_and_4k_are_a_422(client: TestClient, small_portrait_jpeg: bytes) -> None:
    error = _refusal(post_job(client, small_portrait_jpeg, resolution="8k"))
    assert error["code"] == "invalid_resolution" and "hd, 4k" in error["message"]


def test_4k_is_offered_and_taken_only_for_photos_with_the_pixels(
    client: TestClient, small_portrait_jpeg: bytes, large_portrait_jpeg: bytes
) -> None:
    files = {"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")}
    small = client.post("/api/v1/photo-check", files=files).json()
    assert small["resolutions"] == ["hd"]
    error = _refusal(post_job(client, small_portrait_jpeg, resolution="4k"))
    assert error["code"] == "resolution_unavailable"
    assert "at least 1600 pixels" in error["message"] and "Choose hd" in error["message"]

    files = {"photo": ("me.jpg", large_portrait_jpeg, "image/jpeg")}
    large = client.post("/api/v1/photo-check", files=files).json()
    assert large["ok"] is True and large["resolutions"] == ["hd", "4k"]
    r = post_job(client, large_portrait_jpeg, resolution="4K", duration_s="10")
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["resolution"], job["duration_s"]) == ("4k", 10.0)
    assert (job["photo"]["width"], job["photo"]["height"]) == (1600, 1875)  # kept at full size for 4K


def test_the_photo_check_plans_for_the_length_sent(client: TestClient, small_portrait_jpeg: bytes) -> None:
    files = {"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")}
    short = client.post("/api/v1/photo-check", data={"motion": "nod"}, files=files).json()
    long = client.post("/api/v1/photo-check", data={"motion": "nod", "duration_s": "10"}, files=files).json()
    assert short["plan"]["description"] == "two gentle nods"
    assert long["plan"]["description"] == "two gentle nods; three times over"
    bad = client.post("/api/v1/photo-check", data={"duration_s": "11"}, files=files).json()
    assert bad["ok"] is False and bad["problem"]["code"] == "invalid_duration"


def test_again_keeps_the_length_and_size_unless_others_are_sent(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    first = post_job(client, small_portrait_jpeg, duration_s="6").json()
    finish_job(app, first["id"])
    kept = client.post(f"/api/v1/jobs/{first['id']}/again", data={"motion": "nod"}).json()
    assert (kept["duration_s"], kept["resolution"]) == (6.0, "hd")
    other = client.post(f"/api/v1/jobs/{first['id']}/again", data={"duration_s": "3"}).json()
    assert other["duration_s"] == 3.0
    refused = client.post(f"/api/v1/jobs/{first['id']}/again", data={"resolution": "4k"})
    assert _refusal(refused)["code"] == "resolution_unavailable"


def test_a_succeeded_job_says_what_clip_was_made(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job = post_job(client, small_portrait_jpeg).json()
    assert job["video"] is None
    mp4 = finish_job(app, job["id"])
    video = client.get(job["urls"]["self"]).json()["video"]
    assert video == {
        "width": 64,
        "height": 64,
        "fps": 12.0,
        "frames": 12,
        "duration_s": 1.0,
        "bytes": len(mp4),
        "note": None,
        "gif": None,  # finish_job makes none unless asked (tests/app/test_api_share.py)
    }
