"""The clip check as the API and the page give it: a job submitted over HTTP, rendered and checked by the
worker's own function (portrait animator, the real guard), then read back as JSON, in the OpenAPI schema
and on the job's page."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.config import Settings
from tests.app.api_helpers import post_job
from worker import model_cache
from worker.tasks import animate_job, default_sessions


@pytest.fixture
def portrait_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"animator": "portrait"})


def render(app: FastAPI, settings: Settings, job_id: str) -> str:
    """What a worker does with the message: the real task body, with the process's animator and guard."""
    model_cache.reset()
    try:
        return animate_job(
            job_id, worker="w1", settings=settings, store=app.state.store, sessions=default_sessions(settings)
        )
    finally:
        model_cache.reset()


def test_a_succeeded_job_carries_its_clip_check(
    client: TestClient, app: FastAPI, portrait_settings: Settings, portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, portrait_jpeg, motion="smile", seed="3").json()["id"]
    assert client.get(f"/api/v1/jobs/{job_id}").json()["clip_check"] is None  # not checked yet
    assert render(app, portrait_settings, job_id) == "succeeded"

    job = client.get(f"/api/v1/jobs/{job_id}").json()
    check = job["clip_check"]
    assert job["animator"] == "push-in"  # as asked; this test's worker served the portrait animator
    assert check["passed"] and check["failures"] == [] and check["fallback"] is None
    assert check["rendered_by"] == "portrait"
    assert 0 < check["identity_distance"] < 0.45 and check["seconds"] > 0
    (face,) = check["faces"]
    assert face["kept"] == 1.0 and face["identity_max"] == check["identity_distance"]
    assert face["height_px"] > 150 and face["life"] > 0.006
    assert check["summary"] == f"Likeness checked: same person ({check['identity_distance']:.2f})"

    page = client.get(f"/jobs/{job_id}").text
    assert check["summary"] in page and 'id="job-clip-check"' in page


def test_the_clip_check_is_in_the_openapi_schema(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "clip_check" in schemas["JobOut"]["properties"]
    fields = set(schemas["ClipCheckOut"]["properties"])
    assert {"identity_distance", "faces", "passed", "seconds", "fallback", "rendered_by", "summary"} <= fields
    assert {"identity_max", "identity_mean", "kept", "jitter", "life"} <= set(
        schemas["FaceCheckOut"]["properties"]
    )
    assert "clip_guard" in schemas["ReadyOut"]["properties"]


def test_a_job_the_check_failed_says_why(
    client: TestClient, app: FastAPI, portrait_settings: Settings, portrait_jpeg: bytes
) -> None:
    """VIVIFY_CLIP_GUARD=fail and a likeness limit no clip can meet: the job fails as clip_check_failed,
    with the figures, and the page says what happened in the catalogue's words."""
    strict = portrait_settings.model_copy(update={"clip_guard": "fail", "clip_check_identity_max": 0.01})
    job_id = post_job(client, portrait_jpeg, motion="smile", seed="3").json()["id"]
    assert render(app, strict, job_id) == "failed"
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["error"]["code"] == "clip_check_failed" and "identity" in job["error"]["message"]
    assert not job["clip_check"]["passed"] and job["clip_check"]["summary"].startswith("Clip check failed")
    assert job["urls"]["video"] is None
    page = client.get(f"/jobs/{job_id}").text
    assert "did not pass our quality check" in page
