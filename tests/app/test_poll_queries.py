"""A status poll costs one query: one job's GET is its lookup and one statement for where the job stands
(its place in the queue, the queue's recent run times, workers and running jobs), a final job's GET is its
lookup alone, and a list's statements do not grow with its length."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.core import jobs
from app.core.tables import Job
from app.core.waits import recent_run_seconds
from tests.app.api_helpers import finish_job, post_job


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends meanwhile."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def get(client: TestClient, app: FastAPI, path: str) -> tuple[dict[str, Any], list[str]]:
    with statements(app.state.engine) as seen:
        r = client.get(path)
    assert r.status_code == 200, r.text
    return r.json(), list(seen)


def test_one_jobs_get_is_at_most_two_statements(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    first = post_job(client, small_portrait_jpeg).json()["id"]
    second = post_job(client, small_portrait_jpeg).json()["id"]
    job, seen = get(client, app, f"/api/v1/jobs/{second}")
    assert job["status"] == "queued" and job["queue_position"] == 2 and job["eta_s"] > 0
    assert len(seen) <= 2, seen
    # Running: its ETA from its progress, in the same one statement.
    with app.state.sessions() as session:
        assert jobs.claim(session, first, "w1@test") is not None
        assert not jobs.report_progress(session, first, "animating", 0.5)
    job, seen = get(client, app, f"/api/v1/jobs/{first}")
    assert job["status"] == "running" and job["queue_position"] is None and job["eta_s"] > 0
    assert len(seen) <= 2, seen
    # The queued one moved up.
    job, _ = get(client, app, f"/api/v1/jobs/{second}")
    assert job["queue_position"] == 1
    # Final: its lookup alone.
    finish_job(app, second)
    job, seen = get(client, app, f"/api/v1/jobs/{second}")
    assert job["status"] == "succeeded" and job["eta_s"] is None
    assert len(seen) == 1, seen


def test_a_lists_statements_do_not_grow_with_its_length(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    post_job(client, small_portrait_jpeg)
    listed, one = get(client, app, "/api/v1/jobs")
    assert len(listed["jobs"]) == 1
    for _ in range(4):  # the day's free allowance is 5
        assert post_job(client, small_portrait_jpeg).status_code == 202
    listed, five = get(client, app, "/api/v1/jobs")
    assert len(listed["jobs"]) == 5
    assert len(five) == len(one) <= 3, five
    assert sorted(j["queue_position"] for j in listed["jobs"]) == list(range(1, 6))
    etas = {j["queue_position"]: j["eta_s"] for j in listed["jobs"]}
    assert all(etas[p] <= etas[p + 1] for p in range(1, 5))  # later in line, later ready


def test_the_queues_mean_run_time_is_the_etas(
    app: FastAPI, client: TestClient, small_portrait_jpeg: bytes
) -> None:
    """recent_run_seconds is the mean the ETA uses: the succeeded jobs' run times."""
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    with app.state.sessions() as session:
        queue = session.get(Job, job_id).queue  # type: ignore[union-attr]
        assert recent_run_seconds(session, queue) is None  # nothing finished there yet
    finish_job(app, job_id)
    with app.state.sessions() as session:
        run_s = session.get(Job, job_id).run_s  # type: ignore[union-attr]
        assert run_s is not None and run_s >= 0
        assert recent_run_seconds(session, queue) == run_s
