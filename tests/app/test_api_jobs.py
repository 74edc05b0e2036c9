"""The job endpoints on the embedded defaults: submit, read, list, follow, download, cancel, delete."""

from __future__ import annotations

import io
import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.core import jobs
from app.core.config import Settings
from app.core.storage import photo_key, poster_key, video_key
from app.core.tables import Job
from tests.app.api_helpers import SCRAPE, broker_messages, finish_job, post_job

JOB_KEYS = {
    "id", "status", "stage", "stage_detail", "progress", "queue_position", "eta_s", "created_at",
    "started_at", "finished_at", "expires_at", "motion", "plan", "seed", "animator", "photo", "clip_check",
    "error", "urls", "duration_s", "resolution", "video", "faces", "shared",
}  # fmt: skip


def test_submit_answers_202_with_a_job_stores_the_photo_and_enqueues_once(
    client: TestClient, app: FastAPI, settings: Settings, small_portrait_jpeg: bytes
) -> None:
    r = post_job(client, small_portrait_jpeg, motion="look left and smile", seed="42")
    assert r.status_code == 202, r.text
    job = r.json()
    assert set(job) == JOB_KEYS
    assert job["status"] == "queued" and job["queue_position"] == 1 and job["eta_s"] > 0
    assert job["motion"] == "look left and smile" and job["seed"] == 42 and job["animator"] == "push-in"
    assert job["duration_s"] == 4.0 and job["resolution"] == "hd" and job["video"] is None
    assert job["photo"]["width"] == 109 and job["photo"]["height"] == 128 and job["photo"]["bytes"] > 1000
    assert r.headers["location"] == job["urls"]["self"] == f"/api/v1/jobs/{job['id']}"
    assert job["urls"]["video"] is None and job["urls"]["cancel"].endswith("/cancel")
    assert len(job["id"]) >= 22  # 128 random bits
    stored = app.state.store.get(photo_key(job["id"]))
    assert Image.open(io.BytesIO(stored)).format == "JPEG"
    messages = broker_messages(settings)
    assert len(messages) == 1 and job["id"] in messages[0].read_text()
    with app.state.sessions() as session:
        assert session.get(Job, job["id"]).enqueued_at is not None


def test_random_seed_when_absent_and_default_motion(client: TestClient, small_portrait_jpeg: bytes) -> None:
    seeds = {post_job(client, small_portrait_jpeg).json()["seed"] for _ in range(3)}
    assert len(seeds) == 3 and all(0 <= s < 2**31 for s in seeds)
    assert client.get("/api/v1/jobs").json()["jobs"][0]["motion"] == "auto"


def test_enqueue_failure_leaves_the_job_queued_not_lost(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broker_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(app.state.producer, "send_task", broker_down)
    r = post_job(client, small_portrait_jpeg)
    assert r.status_code == 202
    with app.state.sessions() as session:
        row = session.get(Job, r.json()["id"])
        assert row.status == "queued" and row.enqueued_at is None  # the reconciler's cue
    assert b"vivify_enqueue_failures_total 1.0" in client.get("/metrics", headers=SCRAPE).content


def test_list_is_own_jobs_newest_first(
    client: TestClient, other_client: TestClient, small_portrait_jpeg: bytes
) -> None:
    ids = [post_job(client, small_portrait_jpeg).json()["id"] for _ in range(3)]
    post_job(other_client, small_portrait_jpeg, path="/api/v1/jobs")
    listed = [j["id"] for j in client.get("/api/v1/jobs").json()["jobs"]]
    assert listed == ids[::-1]
    assert len(other_client.get("/api/v1/jobs").json()["jobs"]) == 1


def test_queue_position_counts_jobs_ahead(client: TestClient, small_portrait_jpeg: bytes) -> None:
    positions = [post_job(client, small_portrait_jpeg).json()["queue_position"] for _ in range(3)]
    assert positions == [1, 2, 3]


def test_unknown_job_is_404_with_error_json(client: TestClient) -> None:
    for method, path in [
        ("GET", "/api/v1/jobs/nope"),
        ("GET", "/api/v1/jobs/nope/events"),
        ("GET", "/api/v1/jobs/nope/video"),
        ("GET", "/api/v1/jobs/nope/poster"),
        ("POST", "/api/v1/jobs/nope/cancel"),
        ("DELETE", "/api/v1/jobs/nope"),
        ("GET", "/api/v1/jobs/" + "x" * 5000),
    ]:
        r = client.request(method, path)
        assert r.status_code == 404, (method, path)
        assert r.json() == {"error": {"code": "not_found", "message": "No such job."}}


def test_another_visitors_job_is_404_everywhere_and_untouched(
    client: TestClient, other_client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    finish_job(app, job_id)
    for method, path in [
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/api/v1/jobs/{job_id}/events"),
        ("GET", f"/api/v1/jobs/{job_id}/video"),
        ("GET", f"/api/v1/jobs/{job_id}/video?download=1"),
        ("GET", f"/api/v1/jobs/{job_id}/poster"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
        ("DELETE", f"/api/v1/jobs/{job_id}"),
    ]:
        r = other_client.request(method, path)
        assert r.status_code == 404, (method, path)
        assert r.json()["error"]["code"] == "not_found"
    assert other_client.get("/api/v1/jobs").json()["jobs"] == []
    # Still there, still the owner's.
    assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded"
    assert app.state.store.exists(video_key(job_id))


def test_video_is_409_until_succeeded_then_streamed_with_ranges(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    r = client.get(f"/api/v1/jobs/{job_id}/video")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_ready"
    mp4 = finish_job(app, job_id)

    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["urls"]["cancel"] is None
    full = client.get(job["urls"]["video"])
    assert full.status_code == 200 and full.content == mp4
    assert full.headers["content-type"] == "video/mp4" and full.headers["accept-ranges"] == "bytes"
    assert "attachment" not in full.headers.get("content-disposition", "")

    part = client.get(job["urls"]["video"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == mp4[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(mp4)}"
    tail = client.get(job["urls"]["video"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == mp4[-50:]
    bad = client.get(job["urls"]["video"], headers={"Range": f"bytes={len(mp4) + 10}-"})
    assert bad.status_code == 416

    dl = client.get(job["urls"]["download"])
    assert dl.status_code == 200 and dl.content == mp4
    assert dl.headers["content-disposition"] == f'attachment; filename="vivify-{job_id}.mp4"'

    poster = client.get(job["urls"]["poster"])
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(poster.content)).size == (64, 64)


def test_cancel_a_queued_job_then_409(client: TestClient, small_portrait_jpeg: bytes) -> None:
    job = post_job(client, small_portrait_jpeg).json()
    r = client.post(job["urls"]["cancel"])
    assert r.status_code == 202 and r.json()["status"] == "canceled" and r.json()["urls"]["cancel"] is None
    again = client.post(job["urls"]["cancel"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_final"


def test_cancel_a_running_job_sets_the_flag(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    with app.state.sessions() as session:
        jobs.claim(session, job_id, "w1")
    r = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "running"
    with app.state.sessions() as session:
        assert session.get(Job, job_id).cancel_requested is True
        assert jobs.report_progress(session, job_id, "animating", 0.5) is True  # the worker stops


def test_delete_removes_photo_clip_poster_and_row(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    finish_job(app, job_id)
    store = app.state.store
    assert all(store.exists(k(job_id)) for k in (photo_key, video_key, poster_key))
    r = client.delete(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 204 and r.content == b""
    assert not any(store.exists(k(job_id)) for k in (photo_key, video_key, poster_key))
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    with app.state.sessions() as session:
        assert session.get(Job, job_id) is None
    # Deleting does not give the allowance back.
    assert client.get("/api/v1/quota").json()["used"] == 1


def _events(text: str) -> list[dict]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = block.strip().splitlines()
        if "event: job" in lines:
            data = "".join(line[len("data: ") :] for line in lines if line.startswith("data: "))
            out.append(json.loads(data))
    return out


def test_events_stream_one_event_per_change_and_end_when_final(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    finish_job(app, job_id)
    r = client.get(f"/api/v1/jobs/{job_id}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert [e["status"] for e in events] == ["succeeded"]  # already final: one event, then the end
    assert events[0]["urls"]["video"] == f"/api/v1/jobs/{job_id}/video"
    assert "id: succeeded" in r.text
    # The browser reconnects after the stream ends; having seen the final state it is told to stop.
    again = client.get(f"/api/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "succeeded"})
    assert again.status_code == 204


def test_events_follow_progress_until_canceled(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    import threading
    import time

    job_id = post_job(client, small_portrait_jpeg).json()["id"]

    def worker() -> None:
        with app.state.sessions() as session:
            time.sleep(0.2)
            jobs.claim(session, job_id, "w1")
            time.sleep(0.2)
            jobs.report_progress(session, job_id, "animating", 0.5)
            time.sleep(0.2)
            jobs.mark_canceled(session, job_id)

    t = threading.Thread(target=worker)
    t.start()
    r = client.get(f"/api/v1/jobs/{job_id}/events")
    t.join()
    events = _events(r.text)
    states = [(e["status"], e["stage"], e["progress"]) for e in events]
    assert states[0] == ("queued", "queued", 0.0)
    assert ("running", "animating", 0.5) in states
    assert states[-1][0] == "canceled"
    # An event is sent only when the job changed; the ETA may tick between the states shown.
    assert all(a != b for a, b in zip(events, events[1:], strict=False))


def test_quota_counts_submissions(client: TestClient, small_portrait_jpeg: bytes) -> None:
    q = client.get("/api/v1/quota").json()
    assert q == {"limit": 5, "used": 0, "remaining": 5, "resets_at": None}
    post_job(client, small_portrait_jpeg)
    q = client.get("/api/v1/quota").json()
    assert q["used"] == 1 and q["remaining"] == 4 and q["resets_at"] is not None


def test_rejected_uploads_do_not_spend_the_allowance(client: TestClient) -> None:
    r = post_job(client, b"not an image at all")
    assert r.status_code == 415
    assert client.get("/api/v1/quota").json()["used"] == 0
