"""Group photos and sharing on the production path: real Postgres, Redis, S3-compatible storage and
`vivify web` / `vivify worker` processes with the portrait animator. A pair photo animated with one face
chosen, whose clip comes with a GIF, shared by a link that a client without a cookie opens."""

from __future__ import annotations

import httpx
import pytest
from e2e_stack import wait_final
from PIL import Image
from sqlalchemy import create_engine, text

from tests.fixtures.people import people_jpeg

pytestmark = pytest.mark.e2e


def test_one_face_of_a_pair_is_animated_then_shared_with_its_gif(
    stack_factory, portrait: Image.Image
) -> None:
    stack = stack_factory(animator="portrait")
    stack.web()
    stack.worker("w1")
    pair = people_jpeg(portrait, 2)
    with stack.client() as client:
        faces = client.post("/api/v1/photo-check", files={"photo": ("p.jpg", pair, "image/jpeg")}).json()[
            "faces"
        ]
        assert [f["movable"] for f in faces] == [True, True]
        r = client.post(
            "/api/v1/jobs",
            files={"photo": ("pair.jpg", pair, "image/jpeg")},
            data={"consent": "true", "motion": "look-around", "faces": "1"},
        )
        assert r.status_code == 202, r.text
        job = wait_final(client, r.json()["id"], timeout_s=240)
        assert job["status"] == "succeeded", job
        assert job["faces"] == [{"index": 1, "box": faces[1]["box"]}]
        gif = job["video"]["gif"]
        assert gif is not None and max(gif["width"], gif["height"]) <= 480
        assert gif["bytes"] <= 10 * 1024 * 1024 and job["urls"]["gif"]
        url = client.post(job["urls"]["share"]).json()["url"]

    with httpx.Client(timeout=30, follow_redirects=False) as stranger:  # no cookie: the link alone
        page = stranger.get(url)
        assert page.status_code == 200 and "AI-generated" in page.text
        token = url.rsplit("/", 1)[1]
        media = stranger.get(f"{stack.base_url}/api/v1/shared/{token}/gif")
        assert media.status_code == 307 and media.headers["location"].startswith(stack.s3.endpoint)
        assert httpx.get(media.headers["location"], timeout=30).content.startswith(b"GIF89a")
        assert stranger.get(f"{stack.base_url}/api/v1/jobs/{job['id']}/video").status_code == 404
        assert not stranger.cookies

    with create_engine(stack.database_url).connect() as conn:
        stored = conn.execute(
            text("SELECT faces, share_token FROM jobs WHERE id = :id"), {"id": job["id"]}
        ).one()
    assert stored.faces == job["faces"] and stored.share_token == token
    assert f"jobs/{job['id']}/clip.gif" in stack.s3.keys(f"jobs/{job['id']}/")
