"""Upload → queue → worker → storage → download on the production path.

Real Redis (AOF), real Postgres, a real S3-compatible HTTP server (moto), and real `vivify web` and
`vivify worker` processes.
"""

from __future__ import annotations

import httpx
import pytest
from e2e_stack import wait_final
from sqlalchemy import create_engine, text

from models.video import probe

pytestmark = pytest.mark.e2e


def test_a_portrait_becomes_a_clip_on_the_production_path(stack_factory, portrait_jpeg):
    stack = stack_factory()
    web = stack.web()
    worker = stack.worker("w1")
    assert "animator push-in ready" in worker.log()  # loaded once, at start, before any job
    with stack.client() as client:
        r = client.post(
            "/api/v1/jobs",
            files={"photo": ("grace.jpg", portrait_jpeg, "image/jpeg")},
            data={"consent": "true", "motion": "smile", "seed": "11"},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        job = wait_final(client, job_id)
        assert job["status"] == "succeeded", job
        assert job["progress"] == 1.0 and job["error"] is None

        video = client.get(job["urls"]["video"])
        assert video.status_code in (302, 303, 307), video.text  # S3: a short-lived presigned URL
        assert video.headers["location"].startswith(stack.s3.endpoint)
        data = httpx.get(video.headers["location"], timeout=30).content

        cookie = client.cookies["vivify_visitor"]
        other = httpx.Client(base_url=stack.base_url, timeout=10)  # another visitor: not theirs
        assert other.get(f"/api/v1/jobs/{job_id}").status_code == 404
        assert other.get(job["urls"]["video"]).status_code == 404

    info = probe(data)
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
    assert 3.0 <= info.duration_s <= 5.0
    assert info.width % 2 == 0 and info.height % 2 == 0 and info.width >= 64
    assert info.faststart

    keys = stack.s3.keys(f"jobs/{job_id}/")
    assert [k for k in keys if k.endswith(".mp4")] == [f"jobs/{job_id}/clip.mp4"]
    with create_engine(stack.database_url).connect() as conn:
        status, attempts = conn.execute(
            text("SELECT status, attempts FROM jobs WHERE id = :id"), {"id": job_id}
        ).one()
    assert (status, attempts) == ("succeeded", 1)

    # Logs never hold the visitor's cookie, a presigned URL or the photo.
    logs = web.log() + worker.log()
    assert "job_id" in worker.log()  # JSON lines, tagged with the job inside a job
    for secret in (cookie, "X-Amz-Signature", "X-Amz-Credential", video.headers["location"]):
        assert secret not in logs
    assert b"\xff\xd8\xff" not in logs.encode("utf-8", "surrogateescape")
