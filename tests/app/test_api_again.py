"""POST /api/v1/jobs/{id}/again: a new job from a copy of a job's stored photo, with another motion."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

import migrations
from app.core.config import Settings
from app.core.storage import photo_key
from app.core.tables import Job, utcnow
from app.web.main import create_app
from tests.app.api_helpers import broker_messages, finish_job, make_settings, post_job


def _again(client: TestClient, job_id: str, **fields: str):  # noqa: ANN202 (an httpx.Response)
    return client.post(f"/api/v1/jobs/{job_id}/again", data=fields)


def test_again_answers_202_with_a_new_job_on_its_own_copy_of_the_photo(
    client: TestClient, app: FastAPI, settings: Settings, small_portrait_jpeg: bytes
) -> None:
    first = post_job(client, small_portrait_jpeg, motion="smile", seed="3").json()
    assert first["urls"]["again"] == f"/api/v1/jobs/{first['id']}/again"
    finish_job(app, first["id"])
    r = _again(client, first["id"], motion="nod", seed="9")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["id"] != first["id"] and r.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["motion"] == "nod" and job["seed"] == 9
    assert job["animator"] == first["animator"] and job["photo"] == first["photo"]  # report carries over
    store = app.state.store
    assert store.get(photo_key(job["id"])) == store.get(photo_key(first["id"]))
    with app.state.sessions() as session:
        row = session.get(Job, job["id"])
        assert row.photo_key == photo_key(job["id"]) and row.enqueued_at is not None
    messages = broker_messages(settings)
    assert len(messages) == 2 and any(job["id"] in m.read_text() for m in messages)
    # Urlencoded works as well as multipart, and no motion means the default one.
    plain = client.post(
        f"/api/v1/jobs/{first['id']}/again",
        content=b"seed=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert plain.status_code == 202 and plain.json()["motion"] == "auto" and plain.json()["seed"] == 1
    mine = [j["id"] for j in client.get("/api/v1/jobs").json()["jobs"]]
    assert mine == [plain.json()["id"], job["id"], first["id"]]


def test_deleting_the_original_keeps_the_new_jobs_photo(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    first = post_job(client, small_portrait_jpeg).json()
    original = app.state.store.get(photo_key(first["id"]))
    new = _again(client, first["id"], motion="blink").json()
    assert client.delete(f"/api/v1/jobs/{first['id']}").status_code == 204
    assert not app.state.store.exists(photo_key(first["id"]))
    assert app.state.store.get(photo_key(new["id"])) == original
    assert client.get(f"/api/v1/jobs/{new['id']}").status_code == 200
    # The deleted job cannot be animated again: it is gone, not merely photo-less.
    assert _again(client, first["id"]).status_code == 404


def test_another_visitors_job_or_an_unknown_id_is_a_404(
    client: TestClient, other_client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    first = post_job(client, small_portrait_jpeg).json()
    r = _again(other_client, first["id"], motion="nod")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert _again(client, "no-such-job").status_code == 404
    assert len(other_client.get("/api/v1/jobs").json()["jobs"]) == 0


def test_a_photo_no_longer_stored_is_a_409(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    gone = post_job(client, small_portrait_jpeg).json()
    app.state.store.delete(photo_key(gone["id"]))
    r = _again(client, gone["id"], motion="nod")
    assert r.status_code == 409 and r.json()["error"]["code"] == "photo_gone", r.text
    expired = post_job(client, small_portrait_jpeg).json()
    with app.state.sessions() as session:
        session.get(Job, expired["id"]).expires_at = utcnow() - timedelta(minutes=1)
        session.commit()
    r = _again(client, expired["id"], motion="nod")
    assert r.status_code == 409 and r.json()["error"]["code"] == "photo_gone"
    assert len(client.get("/api/v1/jobs").json()["jobs"]) == 2  # no job was made


def test_a_spent_allowance_is_a_429_with_retry_after(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    s = make_settings(tmp_path, free_animations_per_day=1)
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    with TestClient(app, base_url="http://testserver") as c:
        first = post_job(c, small_portrait_jpeg).json()
        r = _again(c, first["id"], motion="nod")
        assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
        assert int(r.headers["retry-after"]) > 0
        assert len(c.get("/api/v1/jobs").json()["jobs"]) == 1
        assert sorted(p.name for p in (s.data_dir).rglob("photo.jpg")) == ["photo.jpg"]  # no orphan copy


def test_a_bad_motion_or_seed_is_a_422(client: TestClient, small_portrait_jpeg: bytes) -> None:
    first = post_job(client, small_portrait_jpeg).json()
    r = _again(client, first["id"], motion="juggle three oranges")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_motion"
    r = _again(client, first["id"], motion="nod", seed="-1")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_seed"
    assert len(client.get("/api/v1/jobs").json()["jobs"]) == 1


def test_a_cross_site_post_is_a_403(client: TestClient, small_portrait_jpeg: bytes) -> None:
    first = post_job(client, small_portrait_jpeg).json()
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        r = client.post(f"/api/v1/jobs/{first['id']}/again", data={"motion": "nod"}, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site", headers
    assert len(client.get("/api/v1/jobs").json()["jobs"]) == 1
