"""The quality report (models.quality, real face detection) on the job and in the pre-submit check."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

import migrations
from app.web.main import create_app
from models.quality import NO_FACE_MESSAGE
from tests.app.api_helpers import jpeg, make_settings, post_job


def test_a_real_portrait_gets_a_face_and_a_good_score(client: TestClient, portrait_jpeg: bytes) -> None:
    r = post_job(client, portrait_jpeg)
    assert r.status_code == 202
    quality = r.json()["photo"]["quality"]
    assert quality["faces"] == 1 and quality["score"] >= 60 and quality["tips"]
    assert client.get(r.json()["urls"]["self"]).json()["photo"]["quality"] == quality


def test_portrait_animator_refuses_a_photo_without_a_face(tmp_path: Path, portrait_jpeg: bytes) -> None:
    s = make_settings(tmp_path, animator="portrait")
    migrations.upgrade(s.resolved_database_url)
    wall = jpeg(Image.new("RGB", (200, 160), (120, 140, 160)))
    with TestClient(create_app(s)) as c:
        r = post_job(c, wall)
        assert r.status_code == 422 and r.json()["error"]["code"] == "no_face"
        # One wording wherever "no face" is said: the job's refusal, the check's problem, its tip, the CLI.
        assert r.json()["error"]["message"] == NO_FACE_MESSAGE
        assert c.get("/api/v1/quota").json()["used"] == 0
        # The check answers 200 with ok: false, as the README says; only the job's creation is a 422.
        checked = c.post("/api/v1/photo-check", files={"photo": ("w.jpg", wall, "image/jpeg")})
        assert checked.status_code == 200
        check = checked.json()
        assert check["ok"] is False and check["problem"]["code"] == "no_face"
        assert check["problem"]["message"] == NO_FACE_MESSAGE and "animator" not in NO_FACE_MESSAGE.lower()
        assert check["photo"]["quality"]["tips"].count(NO_FACE_MESSAGE) == 1
        assert check["photo"]["quality"]["faces"] == 0
        assert post_job(c, portrait_jpeg).status_code == 202


def test_other_animators_take_a_photo_without_a_face(client: TestClient) -> None:
    wall = jpeg(Image.new("RGB", (200, 160), (120, 140, 160)))
    r = post_job(client, wall)  # the test app runs the push-in animator
    assert r.status_code == 202 and r.json()["photo"]["quality"]["faces"] == 0
