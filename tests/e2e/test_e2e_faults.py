"""Faults on the production path: real Redis, Postgres, S3 server and worker processes.

The worker runs `faulty.Faulty`, where the job's seed picks the behaviour: ...1 is slow
(so a job can be caught mid-run), ...2 runs out of GPU memory, anything else is the plain push-in.
"""

from __future__ import annotations

import signal

import pytest
import redis
from e2e_stack import queued_messages, wait_final, wait_for

pytestmark = pytest.mark.e2e

FAULTY = "tests.e2e.faulty:Faulty"
SLOW, OOM, PLAIN = 11, 12, 20


def mid_run(stack, job_id: str) -> dict:
    """Wait until the job is running and well into its animation; returns its row."""

    def check() -> dict | None:
        row = stack.job_row(job_id)
        return row if row["status"] == "running" and row["progress"] > 0.15 else None

    return wait_for(check, 60, f"job {job_id} mid-run", 0.05)


def clips(stack, job_id: str) -> list[str]:
    return [k for k in stack.s3.keys(f"jobs/{job_id}/") if k.endswith(".mp4")]


def test_a_worker_killed_mid_job_is_replaced_and_the_job_finishes_once(stack_factory, small_portrait_jpeg):
    stack = stack_factory(
        animator=FAULTY,
        stale_job_after_s="4",
        task_soft_time_limit_s="20",
        task_time_limit_s="25",
        broker_visibility_timeout_s="30",
    )
    stack.web()
    first = stack.worker("w1")
    with stack.client() as client:
        job_id = stack.submit(client, small_portrait_jpeg, seed=SLOW)
        assert mid_run(stack, job_id)["worker"] == "w1@e2e"
        first.stop(signal.SIGKILL)  # no warm shutdown, no ack, no chance to clean up
        stack.worker("w2", beat=True)
        job = wait_final(client, job_id, timeout_s=90)
    assert job["status"] == "succeeded", job
    row = stack.job_row(job_id)
    assert row["attempts"] == 2 and row["worker"] == "w2@e2e"  # redelivered to the other worker
    assert clips(stack, job_id) == [f"jobs/{job_id}/clip.mp4"]


def test_queued_jobs_survive_a_broker_restart(stack_factory, redis_server, small_portrait_jpeg):
    stack = stack_factory(animator="push-in")
    stack.web()
    broker = redis.Redis.from_url(stack.settings["broker_url"])
    with stack.client() as client:
        queued = [stack.submit(client, small_portrait_jpeg, seed=s) for s in (20, 30, 40)]
        assert queued_messages(broker) == 3  # no worker yet: the ids wait in Redis

        redis_server.stop(signal.SIGKILL)  # no graceful save: only the append-only file keeps them
        redis_server.start()
        assert queued_messages(broker) == 3

        queued.append(stack.submit(client, small_portrait_jpeg, seed=50))  # the web tier reconnects
        stack.worker("w1")  # no beat: the broker alone must have kept every job
        finals = [wait_final(client, job_id, timeout_s=90) for job_id in queued]
    assert [j["status"] for j in finals] == ["succeeded"] * 4
    for job_id in queued:
        assert stack.job_row(job_id)["attempts"] == 1 and len(clips(stack, job_id)) == 1


def test_a_lost_message_is_found_and_resent_by_the_reconciler(stack_factory, small_portrait_jpeg):
    stack = stack_factory(animator="push-in", stale_job_after_s="3")
    stack.web()
    broker = redis.Redis.from_url(stack.settings["broker_url"])
    with stack.client() as client:
        job_id = stack.submit(client, small_portrait_jpeg, seed=PLAIN)
        broker.flushdb()  # the broker lost the message after the job was committed
        assert queued_messages(broker) == 0
        stack.worker("w1", beat=True)
        job = wait_final(client, job_id, timeout_s=60)
    assert job["status"] == "succeeded", job
    assert stack.job_row(job_id)["attempts"] == 1
    assert len(clips(stack, job_id)) == 1


def test_a_storage_outage_is_retried_and_the_job_succeeds_only_with_its_clip(
    stack_factory, s3_server, small_portrait_jpeg
):
    stack = stack_factory(animator=FAULTY, task_max_retries="6")
    stack.web()
    worker = stack.worker("w1", test_frame_sleep_s="0.03")
    with stack.client() as client:
        job_id = stack.submit(client, small_portrait_jpeg, seed=SLOW)
        mid_run(stack, job_id)
        s3_server.stop()
        try:
            refused = client.post(
                "/api/v1/jobs",
                files={"photo": ("p.jpg", small_portrait_jpeg, "image/jpeg")},
                data={"consent": "true"},
            )
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0, refused.text
            # The render ends, storing fails, and the task is retried: the job must not succeed meanwhile.
            wait_for(lambda: "Retry in" in worker.log(), 60, "a retry of the storage error", 0.1)
            # Back in line for each retry, or running it: never succeeded without its clip.
            row = stack.job_row(job_id)
            assert row["status"] in ("queued", "running") and row["video_key"] is None, row
        finally:
            s3_server.start()
        job = wait_final(client, job_id, timeout_s=120)
    assert job["status"] == "succeeded", job
    assert stack.job_row(job_id)["attempts"] >= 2  # retried after the outage
    assert clips(stack, job_id) == [f"jobs/{job_id}/clip.mp4"]


def test_time_limit_and_out_of_memory_fail_clearly_and_the_worker_goes_on(stack_factory, small_portrait_jpeg):
    stack = stack_factory(
        animator=FAULTY, task_soft_time_limit_s="3", task_time_limit_s="20", broker_visibility_timeout_s="30"
    )
    stack.web()
    worker = stack.worker("w1")
    with stack.client() as client:
        slow, oom, plain = (stack.submit(client, small_portrait_jpeg, seed=s) for s in (SLOW, OOM, PLAIN))
        slow_job, oom_job, plain_job = (wait_final(client, j, timeout_s=60) for j in (slow, oom, plain))
    assert (slow_job["status"], slow_job["error"]["code"]) == ("failed", "timeout")
    assert (oom_job["status"], oom_job["error"]["code"]) == ("failed", "out_of_memory")
    assert plain_job["status"] == "succeeded"
    assert worker.alive() and stack.job_row(plain)["worker"] == "w1@e2e"  # the same process recovered
    assert clips(stack, slow) == [] and clips(stack, oom) == []


def test_a_database_outage_is_retried_and_the_job_finishes(
    stack_factory, postgres_server, small_portrait_jpeg
):
    stack = stack_factory(animator=FAULTY, task_max_retries="6")
    stack.web()
    worker = stack.worker("w1", test_frame_sleep_s="0.03")
    with stack.client() as client:
        job_id = stack.submit(client, small_portrait_jpeg, seed=SLOW)
        mid_run(stack, job_id)
        postgres_server.pause()  # the worker's next progress write fails
        try:
            wait_for(lambda: "Retry in" in worker.log(), 60, "a retry of the database error", 0.1)
            down = client.get(f"/api/v1/jobs/{job_id}")
            assert down.status_code == 503 and int(down.headers["Retry-After"]) > 0, down.text
        finally:
            postgres_server.resume()
        job = wait_final(client, job_id, timeout_s=120)
    assert job["status"] == "succeeded", job
    assert stack.job_row(job_id)["attempts"] >= 2
    assert clips(stack, job_id) == [f"jobs/{job_id}/clip.mp4"]
