"""Liveness, readiness (503 + which part failed), metrics, and 503 + Retry-After when a backend is down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import migrations
from app.web.main import create_app
from tests.app.api_helpers import SCRAPE, make_settings, post_job


def test_healthz_and_readyz_ok(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "storage": "ok", "broker": "ok"},
        "clip_guard": "fallback",  # the guard's mode, beside the checks: never a reason to be unready
    }


@pytest.mark.parametrize("mode", ["fail", "off"])
def test_readyz_shows_the_clip_guard_mode_outside_its_checks(tmp_path: Path, mode: str) -> None:
    s = make_settings(tmp_path, clip_guard=mode)
    migrations.upgrade(s.resolved_database_url)
    with TestClient(create_app(s)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["clip_guard"] == mode
        assert set(r.json()["checks"].values()) == {"ok"}


def test_readyz_503_names_the_unreachable_broker(tmp_path: Path) -> None:
    s = make_settings(tmp_path, broker_url="redis://127.0.0.1:1/0")
    migrations.upgrade(s.resolved_database_url)
    with TestClient(create_app(s)) as c:
        start = time.monotonic()
        r = c.get("/readyz")
        assert time.monotonic() - start < 10
        assert r.status_code == 503 and r.headers["retry-after"]
        checks = r.json()["checks"]
        assert checks["database"] == "ok" and checks["storage"] == "ok"
        assert checks["broker"].startswith("unavailable")
        assert c.get("/healthz").status_code == 200  # alive, just not ready


def test_database_unreachable_is_503_with_retry_after(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    s = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path}/missing-dir/none/x.db")
    with TestClient(create_app(s)) as c:
        for r in (c.get("/api/v1/jobs"), c.get("/api/v1/quota"), post_job(c, small_portrait_jpeg)):
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "database_unavailable" and r.headers["retry-after"]
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unavailable")
        assert c.get("/metrics", headers=SCRAPE).status_code == 200  # a scrape survives a dead database


def test_object_store_unreachable_is_503_and_nothing_is_half_written(
    tmp_path: Path, small_portrait_jpeg: bytes
) -> None:
    s = make_settings(
        tmp_path,
        storage_url="s3://photos",
        s3_endpoint_url="http://127.0.0.1:1",
        s3_access_key_id="k",
        s3_secret_access_key="s",
    )
    migrations.upgrade(s.resolved_database_url)
    with TestClient(create_app(s)) as c:
        r = post_job(c, small_portrait_jpeg)
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
        assert r.headers["retry-after"]
        assert c.get("/api/v1/jobs").json()["jobs"] == []  # no job without its photo
        assert c.get("/api/v1/quota").json()["used"] == 0
        assert c.get("/readyz").json()["checks"]["storage"].startswith("unavailable")


def test_metrics_exposes_requests_latency_jobs_and_rejections(
    client: TestClient, small_portrait_jpeg: bytes
) -> None:
    post_job(client, small_portrait_jpeg)
    post_job(client, b"GIF89a....")
    client.get("/api/v1/jobs/some-secret-id")
    r = client.get("/metrics", headers=SCRAPE)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'vivify_http_requests_total{method="POST",route="/api/v1/jobs",status="202"} 1.0' in text
    assert 'vivify_http_requests_total{method="GET",route="/api/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert 'vivify_http_request_duration_seconds_count{method="POST",route="/api/v1/jobs"} 2.0' in text
    assert 'vivify_jobs{status="queued"} 1.0' in text
    assert 'vivify_uploads_rejected_total{code="unsupported_type"} 1.0' in text
    assert "some-secret-id" not in text  # routes are labelled by template, not by id


def test_unknown_route_and_method_use_the_error_format(client: TestClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.put("/api/v1/jobs")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
