"""Operating at scale on the production path (real Redis, Postgres, S3, `vivify web` and workers):
signed webhooks delivered by their own worker to a real receiver on loopback, worker metrics, the
per-animator queue, and the `vivify animate --server` client with an idempotent retry."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_stack import SCRAPE, Service, free_port, wait_final, wait_for

from app.cli.client import VivifyClient
from app.core import webhooks
from app.core.config import Settings
from models.video import probe
from tests.fixtures.webhook_receiver import Delivery, WebhookReceiver

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="  # base64("secret-key-for-tests")


def refuse_the_first_start(_headers: dict[str, str], body: bytes, earlier: list[Delivery]) -> int:
    """503 to the first `start` event (to see it retried), 204 to everything else."""
    first_start = json.loads(body)["type"] == "start" and not any(d.type == "start" for d in earlier)
    return 503 if first_start else 204


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(refuse_the_first_start, path="/hooks/vivify")
    yield r
    r.close()


def hooks_worker(stack: Any) -> Service:
    svc = Service(
        "worker-hooks",
        ["worker", "-Q", "webhooks", "--pool", "threads", "-c", "2", "-n", "hooks@e2e"],
        stack.env(),
        stack.root,
    )
    stack.services.append(svc.start())
    wait_for(lambda: stack._ready(svc), 60, "webhooks worker", 0.2)
    return svc


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{want}}} not in metrics")


def test_signed_webhooks_reach_a_real_receiver_and_workers_export_metrics(
    stack_factory, small_portrait_jpeg: bytes, receiver: WebhookReceiver
) -> None:
    stack = stack_factory(
        webhooks_allow_private="true",  # the receiver is on loopback
        webhook_secret=SECRET,
        webhook_progress_interval_s="0.3",
        webhook_attempts="3",
        animator_options='{"max_side": 256}',
    )
    stack.web()
    metrics_port = free_port()
    stack.worker("w1", worker_metrics_port=str(metrics_port))
    hooks_worker(stack)
    with stack.client() as client:
        job_id = stack.submit(
            client,
            small_portrait_jpeg,
            seed=3,
            webhook=receiver.url,
            webhook_events_filter="start,progress,completed",
        )
        # A receiver that is down never fails a job: its deliveries give up, the job succeeds.
        dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
        dead_id = stack.submit(client, small_portrait_jpeg, seed=4, webhook=dead)
        job = wait_final(client, job_id)
        assert job["status"] == "succeeded", job
        assert wait_final(client, dead_id)["status"] == "succeeded"
        assert client.get("/metrics").status_code == 401  # private: a scrape sends the metrics token
        web_metrics = client.get("/metrics", headers=SCRAPE).text

    # Deliveries are independent tasks: a retried event may arrive after a later one (the Standard
    # Webhooks contract; receivers order by the payload, not by arrival). Wait for the retried start.
    wait_for(lambda: {"start", "completed"} <= {d.type for d in receiver.accepted()}, 30, "webhooks")
    got = receiver.accepted()
    types = [d.type for d in got]
    assert sorted(set(types)) == ["completed", "progress", "start"], types
    assert types.count("start") == types.count("completed") == 1, types
    key = Settings(_env_file=None, webhook_secret=SECRET).webhook_signing_key
    for d in got:
        assert webhooks.verify(key, d.headers, d.body), d.headers
        assert json.loads(d.body)["data"]["id"] == job_id
    assert not webhooks.verify(b"another key", got[0].headers, got[0].body)
    completed = next(json.loads(d.body)["data"] for d in got if d.type == "completed")
    assert completed["status"] == "succeeded" and completed["urls"]["video"].endswith("/video")
    # The refused first `start` was retried with the same webhook-id (receivers can de-duplicate).
    starts = [d for d in receiver.deliveries if d.type == "start"]
    assert [d.status for d in starts] == [503, 204]
    assert starts[0].headers["webhook-id"] == starts[1].headers["webhook-id"]
    start = next(json.loads(d.body)["data"] for d in got if d.type == "start")
    assert start["status"] == "running"
    progress = [json.loads(d.body)["data"] for d in got if d.type == "progress"]
    assert all(p["status"] == "running" and 0 <= p["progress"] < 1 for p in progress), progress

    # The job went through the push-in animator's own queue, and the worker counted it.
    assert stack.job_row(job_id)["queue"] == "animate.push-in"
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert metric(scraped, "vivify_worker_jobs_total", queue="animate.push-in", status="succeeded") == 2.0
    assert (
        metric(scraped, "vivify_worker_run_seconds_count", queue="animate.push-in", status="succeeded") == 2
    )
    assert metric(scraped, "vivify_worker_queue_wait_seconds_count", queue="animate.push-in") == 2
    assert (
        metric(scraped, "vivify_worker_stage_seconds_count", queue="animate.push-in", stage="encoding") == 2
    )
    assert metric(scraped, "vivify_worker_gpu_max_memory_allocated_bytes") == 0.0  # CPU worker
    assert 'vivify_jobs{status="succeeded"} 2.0' in web_metrics


def test_vivify_animate_server_saves_the_clip_and_a_retried_submit_is_the_same_job(
    stack_factory, small_portrait_jpeg: bytes, tmp_path: Path
) -> None:
    stack = stack_factory(animator_options='{"max_side": 256}')
    stack.web()
    stack.worker("w1")
    photo = tmp_path / "grace.jpg"
    photo.write_bytes(small_portrait_jpeg)
    out = tmp_path / "clip.mp4"
    args = ["animate", str(photo), "--server", stack.base_url, "-o", str(out), "--seed", "5"]
    cmd = Service("animate", args, {}, tmp_path).cmd  # the installed `vivify` console script
    done = subprocess.run(cmd, env=stack.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {out}" in done.stdout and "%" in done.stderr  # the progress bar went to stderr
    info = probe(out.read_bytes())
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0) and 3.0 <= info.duration_s <= 5.0

    with VivifyClient(stack.base_url) as c:
        first = c.submit(photo, seed=1, idempotency_key="retry-me")
        used = c.http.get("/api/v1/quota").json()["used"]  # counts this IP's earlier CLI job too
        again = c.submit(photo, seed=1, idempotency_key="retry-me")
        assert again["id"] == first["id"]
        assert c.http.get("/api/v1/quota").json()["used"] == used
        assert len(c.http.get("/api/v1/jobs").json()["jobs"]) == 1
        assert wait_final(c.http, first["id"])["status"] == "succeeded"


def test_vivify_up_delivers_webhooks_through_its_own_events_worker(
    tmp_path: Path, small_portrait_jpeg: bytes, receiver: WebhookReceiver
) -> None:
    from e2e_stack import base_env

    port = free_port()
    env = base_env(data_dir=str(tmp_path / "var"), animator="push-in", webhooks_allow_private="true")
    env.update(PORT=str(port), HOST="127.0.0.1")
    up = Service("up", ["up"], env, tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 90, "vivify up", 0.25)
        with httpx.Client(base_url=base, timeout=30) as client:
            r = client.post(
                "/api/v1/jobs",
                files={"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")},
                data={"consent": "true", "webhook": receiver.url},
            )
            assert r.status_code == 202, r.text
            assert wait_final(client, r.json()["id"], timeout_s=120)["status"] == "succeeded"
        wait_for(lambda: {"start", "completed"} <= {d.type for d in receiver.accepted()}, 60, "webhooks")
    finally:
        up.stop(timeout_s=40)
