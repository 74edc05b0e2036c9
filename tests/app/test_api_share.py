"""Share links: private by default; the owner makes one (the same one when asked again) and revokes it.
Whoever holds it sees the clip, its GIF and the AI-generated caption, by the token alone and with no
cookie, and nothing else of the visitor; the owner-only routes stay the owner's."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.tables import Job, utcnow
from tests.app.api_helpers import finish_job, post_job


@pytest.fixture
def stranger(app: FastAPI):
    """Someone who got the link: a client that holds no cookie, and is given none by the shared page."""
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


def shared_job(client: TestClient, app: FastAPI, photo: bytes, gif: bool = True) -> tuple[str, str, bytes]:
    job_id = post_job(client, photo).json()["id"]
    mp4 = finish_job(app, job_id, gif=gif)
    r = client.post(f"/api/v1/jobs/{job_id}/share")
    assert r.status_code == 200, r.text
    return job_id, urlparse(r.json()["url"]).path, mp4


def test_a_job_is_private_until_shared_and_only_a_finished_one_can_be(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job = post_job(client, small_portrait_jpeg).json()
    assert job["shared"] is False and job["urls"]["share"] == f"/api/v1/jobs/{job['id']}/share"
    early = client.post(job["urls"]["share"])
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_ready"
    finish_job(app, job["id"])
    url = client.post(job["urls"]["share"]).json()["url"]
    assert client.post(job["urls"]["share"]).json()["url"] == url  # the same link when asked again
    token = url.rsplit("/", 1)[1]
    assert url == f"http://testserver/s/{token}" and len(token) >= 43  # 256 random bits
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["shared"] is True


def test_the_shared_page_shows_the_clip_and_caption_and_nothing_else_of_the_visitor(
    client: TestClient, app: FastAPI, stranger: TestClient, small_portrait_jpeg: bytes
) -> None:
    job_id, path, _ = shared_job(client, app, small_portrait_jpeg)
    page = stranger.get(path)
    assert page.status_code == 200
    assert "AI-generated" in page.text
    assert '<meta name="robots" content="noindex' in page.text
    assert "noindex" in page.headers["x-robots-tag"]
    token = path.rsplit("/", 1)[1]
    assert f"/api/v1/shared/{token}/video" in page.text and f"/api/v1/shared/{token}/gif" in page.text
    assert job_id not in page.text and "/photo" not in page.text  # no job id, no photo, no history
    assert "set-cookie" not in page.headers and not stranger.cookies


def test_shared_media_are_served_by_the_token_alone(
    client: TestClient, app: FastAPI, stranger: TestClient, small_portrait_jpeg: bytes
) -> None:
    job_id, path, mp4 = shared_job(client, app, small_portrait_jpeg)
    token = path.rsplit("/", 1)[1]
    video = stranger.get(f"/api/v1/shared/{token}/video")
    assert video.status_code == 200 and video.content == mp4
    assert "noindex" in video.headers["x-robots-tag"]
    part = stranger.get(f"/api/v1/shared/{token}/video", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == mp4[:10]
    assert stranger.head(f"/api/v1/shared/{token}/video").status_code == 200
    assert stranger.get(f"/api/v1/shared/{token}/poster").headers["content-type"] == "image/jpeg"
    gif = stranger.get(f"/api/v1/shared/{token}/gif")
    assert gif.status_code == 200 and gif.content.startswith(b"GIF89a")
    assert not stranger.cookies
    # The owner's routes stay the owner's: the token opens nothing there.
    for what in ("", "/video", "/poster", "/gif", "/photo", "/events"):
        assert stranger.get(f"/api/v1/jobs/{job_id}{what}").status_code == 404
    assert stranger.post(f"/api/v1/jobs/{job_id}/share").status_code == 404
    assert stranger.delete(f"/api/v1/jobs/{job_id}/share").status_code == 404
    assert stranger.get(f"/api/v1/shared/{token}/photo").status_code == 404  # never the photo


def test_a_revoked_link_stops_working_for_everyone(
    client: TestClient, app: FastAPI, stranger: TestClient, small_portrait_jpeg: bytes
) -> None:
    job_id, path, _ = shared_job(client, app, small_portrait_jpeg)
    token = path.rsplit("/", 1)[1]
    assert client.delete(f"/api/v1/jobs/{job_id}/share").status_code == 204
    gone = stranger.get(path)
    assert gone.status_code == 404 and "noindex" in gone.headers["x-robots-tag"]
    media = stranger.get(f"/api/v1/shared/{token}/video")
    assert media.status_code == 404 and media.json()["error"]["code"] == "not_shared"
    assert client.get(f"/api/v1/jobs/{job_id}").json()["shared"] is False
    again = urlparse(client.post(f"/api/v1/jobs/{job_id}/share").json()["url"]).path
    assert again != path and stranger.get(again).status_code == 200  # a new link, not the old one back


def test_a_link_ends_when_its_job_expires_or_is_deleted(
    client: TestClient, app: FastAPI, stranger: TestClient, small_portrait_jpeg: bytes
) -> None:
    job_id, path, _ = shared_job(client, app, small_portrait_jpeg)
    with app.state.sessions() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    assert stranger.get(path).status_code == 404
    other_id, other_path, _ = shared_job(client, app, small_portrait_jpeg)
    assert client.delete(f"/api/v1/jobs/{other_id}").status_code == 204
    assert stranger.get(other_path).status_code == 404


@pytest.mark.parametrize("token", ["x", "a" * 43, "a" * 500, "..%2F..%2Fjobs", "%00" * 30])
def test_an_unknown_or_malformed_token_is_a_404_never_a_500(stranger: TestClient, token: str) -> None:
    assert stranger.get(f"/s/{token}").status_code == 404
    assert stranger.get(f"/api/v1/shared/{token}/video").status_code == 404


def test_the_owner_gets_the_gif_and_the_photo_for_before_and_after(
    client: TestClient, app: FastAPI, other_client: TestClient, small_portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    assert client.get(f"/api/v1/jobs/{job_id}").json()["urls"]["gif"] is None
    finish_job(app, job_id, gif=True)
    urls = client.get(f"/api/v1/jobs/{job_id}").json()["urls"]
    gif = client.get(urls["gif"])
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    photo = client.get(urls["photo"])
    assert photo.status_code == 200 and photo.content[:2] == b"\xff\xd8"
    assert other_client.get(urls["gif"]).status_code == 404
    assert other_client.get(urls["photo"]).status_code == 404


def test_a_clip_without_a_gif_says_so(client: TestClient, app: FastAPI, small_portrait_jpeg: bytes) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    finish_job(app, job_id, gif=False)
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["urls"]["gif"] is None and job["video"]["gif"] is None
    r = client.get(f"/api/v1/jobs/{job_id}/gif")
    assert r.status_code == 404 and r.json()["error"]["code"] == "gone"


def test_the_schema_describes_sharing(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"post", "delete"} <= set(spec["paths"]["/api/v1/jobs/{job_id}/share"])
    assert "/api/v1/shared/{token}/video" in spec["paths"]
    assert "/api/v1/jobs/{job_id}/gif" in spec["paths"] and "/api/v1/jobs/{job_id}/photo" in spec["paths"]
    urls = spec["components"]["schemas"]["JobUrls"]["properties"]
    assert {"gif", "photo", "share"} <= set(urls)
