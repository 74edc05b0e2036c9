"""One queue per animator (and model), message priority for short previews, and migration 0002."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

import migrations
from app.core.queue import (
    PRIORITY_LONG,
    PRIORITY_PREVIEW,
    celery_config,
    enqueue_job,
    make_producer,
    priority_for,
    queue_for,
)
from tests.app.api_helpers import SCRAPE, broker_messages, make_settings


@pytest.mark.parametrize(
    ("animator", "model", "queue"),
    [
        ("portrait", None, "animate.portrait"),
        ("push-in", None, "animate.push-in"),
        ("diffusion", None, "animate.diffusion"),
        (
            "diffusion",
            "stabilityai/stable-video-diffusion-img2vid-xt",
            "animate.diffusion.stable-video-diffusion-img2vid-xt",
        ),
        ("diffusion", "/models/Wan2.1 I2V/", "animate.diffusion.wan2-1-i2v"),
        ("bench.fixed_time_animator:FixedTimeAnimator", None, "animate.fixedtimeanimator"),
    ],
)
def test_queue_names_follow_the_animator_and_model(animator: str, model: str | None, queue: str) -> None:
    assert queue_for(animator, model) == queue
    assert len(queue) <= 64  # fits Job.queue


def test_previews_go_before_diffusion() -> None:
    # Redis pops priority 0 first.
    assert priority_for("portrait") == priority_for("push-in") == PRIORITY_PREVIEW
    assert priority_for("diffusion") == PRIORITY_LONG > PRIORITY_PREVIEW


def test_redis_transport_keeps_priority_lists(tmp_path: Path) -> None:
    conf = celery_config(make_settings(tmp_path, broker_url="redis://127.0.0.1:6379/0"))
    opts = conf["broker_transport_options"]
    assert opts["priority_steps"] == list(range(10)) and opts["queue_order_strategy"] == "priority"
    assert "task_time_limit" not in conf  # a consumer-side setting: the worker's app sets it (see worker/)


def test_enqueue_sends_queue_and_priority(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    enqueue_job("job-1", "animate.diffusion", celery=make_producer(s), priority=PRIORITY_LONG)
    [message] = broker_messages(s)
    body = message.read_text()
    assert "job-1" in body and '"routing_key": "animate.diffusion"' in body and '"priority": 6' in body


def test_migration_0002_keeps_rows_and_goes_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    cfg = migrations.alembic_config(url)
    command.upgrade(cfg, "0001")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            cols = {
                "id": "j1", "visitor_id": "v", "status": "queued", "stage": "queued", "stage_detail": "",
                "progress": 0, "cancel_requested": False, "seed": 1, "animator": "portrait",
                "queue": "animate", "photo_width": 1, "photo_height": 1, "photo_bytes": 1, "attempts": 0,
                "created_at": "2026-01-01", "expires_at": "2026-01-02",
            }  # fmt: skip
            names, params = ", ".join(cols), ", ".join(":" + c for c in cols)
            conn.execute(text(f"INSERT INTO jobs ({names}) VALUES ({params})"), cols)
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, priority, idempotency_key FROM jobs")).all() == [
                ("j1", 0, None)
            ]
        unique = {i["name"]: i["unique"] for i in inspect(engine).get_indexes("jobs")}
        assert unique["uq_jobs_visitor_idempotency"]
        command.downgrade(cfg, "0001")
        assert "priority" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    finally:
        engine.dispose()


def test_metrics_count_queued_jobs_per_queue(client, app, small_portrait_jpeg: bytes) -> None:
    from app.core.tables import Job
    from tests.app.api_helpers import post_job

    ids = [post_job(client, small_portrait_jpeg).json()["id"] for _ in range(2)]
    with app.state.sessions() as session:
        queue = session.get(Job, ids[0]).queue
        session.add(Job(**{**_job_values(session.get(Job, ids[0])), "id": "other", "queue": "animate.other"}))
        session.commit()
    text_ = client.get("/metrics", headers=SCRAPE).text
    assert f'vivify_queue_length{{queue="{queue}"}} 2.0' in text_
    assert 'vivify_queue_length{queue="animate.other"} 1.0' in text_
    client.post(f"/api/v1/jobs/{ids[0]}/cancel")
    assert f'vivify_queue_length{{queue="{queue}"}} 1.0' in client.get("/metrics", headers=SCRAPE).text


def _job_values(job) -> dict:
    return {c.key: getattr(job, c.key) for c in job.__table__.columns}
