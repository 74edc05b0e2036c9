"""Recorded motion curves through the API: refused with 422 invalid_motion_curves and a clear message, or
stored on the job as its motion ("recorded") with a plan written from them; the photo check's rig for
the live view; the rules GET /v1/motions tells clients."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.core.tables import Job
from models.motion import CHANNEL_LIMITS, CHANNELS
from models.motion_curves import RecordedMotion
from tests.app.api_helpers import broker_messages, post_job


def _curves(n: int = 96, **override: list[Any]) -> str:
    t = np.arange(n) / n
    channels: dict[str, list[Any]] = {
        "yaw": (-10.0 * np.sin(np.pi * np.clip(t / 0.45, 0, 1))).round(3).tolist(),
        "smile": (0.7 * np.clip(np.sin(np.pi * np.clip((t - 0.55) / 0.35, 0, 1)), 0, 1)).round(3).tolist(),
    }
    channels.update(override)
    return json.dumps({"fps": 24, "channels": channels})


def _refused(r: Any) -> str:
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_motion_curves", error
    return str(error["message"])


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"motion_curves": _curves(nod=[0.0] * 96)}, ["Unknown channel 'nod'"]),
        (
            {"motion_curves": _curves(smile=[0.0] * 90)},
            ["same number of samples", "yaw has 96", "smile has 90"],
        ),
        ({"motion_curves": _curves(40, smile=[0.0] * 40)}, ["40 samples", "72 to 240"]),
        ({"motion_curves": _curves(250, smile=[0.0] * 250)}, ["250 samples", "72 to 240"]),
        (
            {"motion_curves": _curves(yaw=[0.0] * 50 + [40.0] + [0.0] * 45)},
            ["'yaw', sample 50", "out of range"],
        ),
        ({"motion_curves": _curves(smile=[0.0] * 95 + ["big"])}, ["'smile', sample 95", "not a number"]),
        ({"motion_curves": _curves(smile=[0.0] * 95 + [float("nan")])}, ["'smile', sample 95", "not finite"]),
        ({"motion_curves": _curves()[:-5]}, ["not valid JSON"]),
        ({"motion_curves": json.dumps({"fps": 30, "channels": {"yaw": [0] * 96}})}, ["fps must be 24"]),
        ({"motion_curves": _curves(), "motion": "nod"}, ["either motion text or motion_curves"]),
        ({"motion": "recorded"}, ['"recorded" needs its curves']),
    ],
)
def test_bad_curves_are_a_422_naming_the_problem(
    client: TestClient, small_portrait_jpeg: bytes, fields: dict[str, str], words: list[str]
) -> None:
    message = _refused(post_job(client, small_portrait_jpeg, **fields))
    for w in words:
        assert w in message, message
    assert client.get("/api/v1/jobs").json()["jobs"] == []  # no job, nothing queued


def test_curves_over_48_kib_are_a_422_not_a_bare_too_long(
    client: TestClient, small_portrait_jpeg: bytes
) -> None:
    big = json.dumps({"fps": 24, "channels": {k: [0.1234567890123456789] * 180 for k in CHANNELS}})
    big = big.replace("0.12345678901234568", "0.1234567890123456789012345678")
    assert 48 * 1024 < len(big) < 64 * 1024
    assert "at most 49152" in _refused(post_job(client, small_portrait_jpeg, motion_curves=big))


def test_a_recorded_job_stores_its_curves_and_their_plan(
    client: TestClient, app: FastAPI, settings: Any, small_portrait_jpeg: bytes
) -> None:
    sent = _curves()
    for motion in ("", "recorded", " Recorded "):
        r = post_job(client, small_portrait_jpeg, motion_curves=sent, motion=motion)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["motion"] == "recorded"
        assert job["plan"]["description"] == "turns toward the left, then smiles"
        assert job["plan"]["peaks"]["yaw"] == pytest.approx(10.0, abs=0.01)
        assert job["plan"]["intensity"] == pytest.approx(10 / 15, abs=0.01)
        with app.state.sessions() as session:
            row = session.get(Job, job["id"])
            assert row is not None
            assert row.motion == "recorded" and row.motion_plan["name"] == "recorded"
            assert row.motion_curves == json.loads(sent)  # exactly what was sent
            assert RecordedMotion.from_json(row.motion_curves).samples == 96
        assert client.get(job["urls"]["self"]).json()["plan"] == job["plan"]
    assert len(broker_messages(settings)) == 3
    # Without curves, nothing is stored for them.
    plain = post_job(client, small_portrait_jpeg, motion="nod").json()
    with app.state.sessions() as session:
        assert session.get(Job, plain["id"]).motion_curves is None


def test_the_page_form_takes_curves_too(client: TestClient, app: FastAPI, small_portrait_jpeg: bytes) -> None:
    client.get("/")
    r = client.post(
        "/jobs",
        files={"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")},
        data={"consent": "true", "motion_curves": _curves()},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:300]
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    with app.state.sessions() as session:
        row = session.get(Job, job_id)
        assert row is not None and row.motion == "recorded" and row.motion_curves is not None
    bad = client.post(
        "/jobs",
        files={"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")},
        data={"consent": "true", "motion_curves": _curves(nod=[0.0] * 96)},
    )
    assert bad.status_code == 422
    assert "We could not use the recorded motion." in bad.text


def test_the_curves_are_part_of_the_idempotency_fingerprint(
    client: TestClient, small_portrait_jpeg: bytes
) -> None:
    def post(curves: str | None) -> Any:
        data = {"consent": "true", **({"motion_curves": curves} if curves is not None else {})}
        files = {"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")}
        return client.post("/api/v1/jobs", data=data, files=files, headers={"Idempotency-Key": "k-curves"})

    first = post(_curves())
    assert first.status_code == 202, first.text
    again = post(_curves())
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = post(_curves(smile=[0.0] * 96))
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert post(None).status_code == 422  # the same key without the curves is another request too
    assert len(client.get("/api/v1/jobs").json()["jobs"]) == 1


def test_the_fingerprint_changes_with_the_curves_and_stays_without_them() -> None:
    from app.core.service.create import JobRequest, request_fingerprint

    base = JobRequest(photo=b"abc", consent=True, motion="nod", seed="1")
    with_curves = JobRequest(photo=b"abc", consent=True, seed="1", motion_curves=_curves())
    other_curves = JobRequest(photo=b"abc", consent=True, seed="1", motion_curves=_curves(yaw=[1.0] * 96))
    assert len({request_fingerprint(r) for r in (base, with_curves, other_curves)}) == 3
    # A submit without curves hashes as before curves existed (keys retried across a deploy still match).
    import hashlib

    fields = {"photo": hashlib.sha256(b"abc").hexdigest(), "motion": "nod", "seed": "1", "animator": None}
    fields |= {"webhook": None, "webhook_events": None}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert request_fingerprint(base) == hashlib.sha256(text.encode()).hexdigest()


RIG_KEYS = {
    "format",
    "version",
    "width",
    "height",
    "vertices",
    "triangles",
    "index_bytes",
    "rows",
    "displacements",
    "faces",
    "limits",
}


def _check(client: TestClient, photo: bytes, query: str = "", **fields: str) -> dict[str, Any]:
    files = {"photo": ("me.jpg", photo, "image/jpeg")}
    r = client.post(f"/api/v1/photo-check{query}", data=fields, files=files)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_photo_check_answers_the_rig_only_when_asked(client: TestClient, portrait_jpeg: bytes) -> None:
    plain = _check(client, portrait_jpeg)
    assert plain["ok"] is True and "rig" not in plain  # the answer is unchanged without ?rig=true
    assert "rig" not in _check(client, portrait_jpeg, "?rig=false")

    checked = _check(client, portrait_jpeg, "?rig=true")
    rig = checked["rig"]
    assert checked["ok"] is True and rig is not None
    assert set(rig) >= RIG_KEYS
    assert (rig["format"], rig["version"]) == ("vivify-rig", 2)
    # Built on the photo as it will be stored, fitted like the portrait animator does (at most 1080 px).
    assert (rig["width"], rig["height"]) == (checked["photo"]["width"], checked["photo"]["height"])
    assert rig["limits"] == {k: list(v) for k, v in CHANNEL_LIMITS.items()}
    vertices = np.frombuffer(base64.b64decode(rig["vertices"]), "<f4").reshape(-1, 2)
    index = "<u2" if rig["index_bytes"] == 2 else "<u4"
    triangles = np.frombuffer(base64.b64decode(rig["triangles"]), index).reshape(-1, 3)
    moves = np.frombuffer(base64.b64decode(rig["displacements"]), "<i2")
    assert len(vertices) > 50 and len(triangles) > 50 and triangles.max() < len(vertices)
    assert moves.size == len(rig["rows"]) * len(vertices) * 2
    assert {row["channel"] for row in rig["rows"]} == {"yaw", "pitch", "roll", "smile", "brow", "breath"}
    assert len(rig["faces"]) == 1 and len(rig["faces"][0]["eyes"]) == 2
    assert len(json.dumps(rig)) < 400_000  # tens of kB, not a video


def test_the_rig_is_null_when_the_check_is_not_ok_or_there_is_no_face(
    client: TestClient, small_portrait_jpeg: bytes
) -> None:
    refused = _check(client, small_portrait_jpeg, "?rig=true", motion="moonwalk please")
    assert refused["ok"] is False and refused["rig"] is None
    buf = io.BytesIO()
    Image.new("RGB", (320, 320), (90, 140, 200)).save(buf, "JPEG")
    faceless = _check(client, buf.getvalue(), "?rig=true")
    assert faceless["ok"] is True and faceless["rig"] is None  # push-in needs no face; there is no rig


def test_motions_lists_the_curves_rules(client: TestClient) -> None:
    rules = client.get("/api/v1/motions").json()["curves"]
    assert rules["fps"] == 24 and (rules["min_samples"], rules["max_samples"]) == (72, 240)
    assert rules["max_bytes"] == 48 * 1024 and rules["channels"] == list(CHANNELS)
    assert rules["limits"] == {k: list(v) for k, v in CHANNEL_LIMITS.items()}
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert "motion_curves" in body["properties"]
    check = schema["paths"]["/api/v1/photo-check"]["post"]
    assert (
        "motion_curves" not in check["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    )
    assert any(p["name"] == "rig" for p in check["parameters"])


def test_a_recording_needs_the_consent_box_like_any_job(
    client: TestClient, settings: Any, small_portrait_jpeg: bytes
) -> None:
    for consent in ("", "false"):
        r = post_job(client, small_portrait_jpeg, motion_curves=_curves(), consent=consent)
        assert r.status_code == 422 and r.json()["error"]["code"] == "consent_required", r.text
    assert client.get("/api/v1/jobs").json()["jobs"] == [] and broker_messages(settings) == []


def test_the_checked_rig_is_kept_where_the_worker_finds_it(
    app: FastAPI, client: TestClient, portrait_jpeg: bytes
) -> None:
    """The rig answered is kept in the store under the stored photo's content: the photo a job made from
    the same upload stores has that very hash, so its worker renders from this rig. Plain checks keep
    nothing."""
    import hashlib

    from app.core.kept_rigs import rig_key
    from app.core.storage import photo_key
    from models.portrait.mesh import MAX_FACES, rig_name

    _check(client, portrait_jpeg)
    assert not [k for k in app.state.store.keys() if k.startswith("rigs/")]  # noqa: SIM118  # a store
    rig = _check(client, portrait_jpeg, "?rig=true")["rig"]
    job_id = post_job(client, portrait_jpeg).json()["id"]
    digest = hashlib.sha256(app.state.store.get(photo_key(job_id))).hexdigest()
    assert json.loads(app.state.store.get(rig_key(digest, rig_name(1080, MAX_FACES)))) == rig


def test_a_recording_sets_the_clip_length_unless_a_longer_one_is_asked(
    client: TestClient, small_portrait_jpeg: bytes
) -> None:
    own = post_job(client, small_portrait_jpeg, motion_curves=_curves(108))  # 4.5 s at 24 fps
    assert own.status_code == 202, own.text
    assert own.json()["duration_s"] == 4.5
    longer = post_job(client, small_portrait_jpeg, motion_curves=_curves(108), duration_s="9")
    assert longer.status_code == 202, longer.text
    assert longer.json()["duration_s"] == 9.0  # played once, then eased back and held
    shorter = post_job(client, small_portrait_jpeg, motion_curves=_curves(108), duration_s="4")
    assert shorter.status_code == 422, shorter.text
    error = shorter.json()["error"]
    assert error["code"] == "invalid_duration"
    assert "4.5 s, longer than the 4 s clip" in error["message"]
    assert len(client.get("/api/v1/jobs").json()["jobs"]) == 2
