"""Group photos through the API: the photo check lists the faces, and a job takes the ones to animate
(`faces`), refusing by name a face that is not there or cannot move, and any part of the faces for an
animator that cannot keep a face still."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

import migrations
from app.core.config import Settings
from app.core.tables import Job
from tests.app.api_helpers import broker_messages, make_settings, post_job
from tests.fixtures.people import people_jpeg


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = make_settings(tmp_path, animator="portrait", extra_animators="diffusion")
    migrations.upgrade(s.resolved_database_url)
    return s


@pytest.fixture(scope="module")
def pair(portrait: Image.Image) -> bytes:
    return people_jpeg(portrait, 2)


@pytest.fixture(scope="module")
def four(portrait: Image.Image) -> bytes:
    return people_jpeg(portrait, 4)


def check(client: TestClient, photo: bytes) -> dict:
    r = client.post("/api/v1/photo-check", files={"photo": ("p.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_photo_check_lists_every_face_with_its_box_and_whether_it_can_move(
    client: TestClient, four: bytes
) -> None:
    body = check(client, four)
    faces = body["faces"]
    assert body["photo"]["quality"]["faces"] == len(faces) == 4  # the count stays where it was
    assert [f["index"] for f in faces] == [0, 1, 2, 3]
    assert [f["movable"] for f in faces] == [True, True, True, False]  # the animator moves 3
    assert len({f["box"][0] for f in faces}) == 4  # four places, one box each
    assert all(len(f["box"]) == 4 and min(f["box"]) >= 0 and max(f["box"]) <= 1 for f in faces)


def test_a_job_keeps_the_chosen_faces_by_their_boxes(
    client: TestClient, app: FastAPI, settings: Settings, pair: bytes
) -> None:
    faces = check(client, pair)["faces"]
    r = post_job(client, pair, faces="1")
    assert r.status_code == 202, r.text
    assert r.json()["faces"] == [{"index": 1, "box": faces[1]["box"]}]
    with app.state.sessions() as session:
        row = session.get(Job, r.json()["id"])
        assert row is not None and row.faces == [{"index": 1, "box": faces[1]["box"]}]
    assert broker_messages(settings)
    every = post_job(client, pair, faces=" 0, 1 ")
    assert every.status_code == 202 and every.json()["faces"] is None  # every movable face: the default
    unsaid = post_job(client, pair)
    assert unsaid.status_code == 202 and unsaid.json()["faces"] is None


@pytest.mark.parametrize(
    ("faces", "code", "named"),
    [
        ("7", "unknown_face", "face 7"),
        ("0,4", "unknown_face", "face 4"),
        ("3", "face_not_movable", "Face 3"),
        ("one", "invalid_faces", "0,2"),
        ("0,,1", "invalid_faces", "0,2"),
        ("-1", "invalid_faces", "0,2"),
    ],
)
def test_a_face_not_there_or_not_movable_is_a_422_naming_it(
    client: TestClient, settings: Settings, four: bytes, faces: str, code: str, named: str
) -> None:
    r = post_job(client, four, faces=faces)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    assert named in r.json()["error"]["message"]
    assert not broker_messages(settings)


def test_the_diffusion_animator_refuses_a_part_of_the_faces_and_says_why(
    client: TestClient, settings: Settings, pair: bytes
) -> None:
    r = post_job(client, pair, faces="1", animator="diffusion")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "faces_unsupported"
    assert "cannot keep a face still" in r.json()["error"]["message"]
    every = post_job(client, pair, faces="0,1", animator="diffusion")
    assert every.status_code == 202, every.text  # every face is what it does anyway


def test_the_schema_describes_faces(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert "faces" in body["properties"]
    schemas = spec["components"]["schemas"]
    assert {"index", "box", "movable"} <= set(schemas["FaceOut"]["properties"])
    assert "faces" in schemas["PhotoCheckOut"]["properties"]
    assert "faces" in schemas["JobOut"]["properties"]


def test_animating_again_keeps_the_chosen_faces(client: TestClient, app: FastAPI, pair: bytes) -> None:
    first = post_job(client, pair, faces="0").json()
    again = client.post(f"/api/v1/jobs/{first['id']}/again", data={"motion": "nod"})
    assert again.status_code == 202, again.text
    assert again.json()["faces"] == first["faces"] and first["faces"][0]["index"] == 0
