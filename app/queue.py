"""The producer side of the job queue. The web tier enqueues by task name and never imports worker/.

`celery_config()` is shared with worker/celery_app.py so producer and consumer always agree.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery

from app.core.config import Settings, get_settings

ANIMATE_TASK = "vivify.animate"
DEFAULT_QUEUE = "animate"


def celery_config(settings: Settings) -> dict[str, Any]:
    broker = settings.resolved_broker_url
    transport: dict[str, Any] = {}
    if broker.startswith("filesystem://"):
        import app.broker_fs  # noqa: F401  registers the vivifyfs:// transport (atomic writes)

        broker = "vivifyfs://"
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        transport = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    elif broker.startswith(("redis://", "rediss://")):
        # Unacked messages return to the queue after this; longer than the hard time limit.
        transport = {"visibility_timeout": settings.broker_visibility_timeout_s}
    return {
        "broker_url": broker,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": DEFAULT_QUEUE,
        # The job row is the source of truth; no result backend.
        "task_ignore_result": True,
        "result_backend": None,
        # Long GPU work: ack only after the task ran, redeliver if the worker dies, one job at a time.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "task_track_started": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
    }


def make_producer(settings: Settings) -> Celery:
    celery = Celery("vivify-web")
    celery.conf.update(celery_config(settings))
    return celery


@functools.lru_cache(maxsize=1)
def producer() -> Celery:
    return make_producer(get_settings())


def enqueue_job(job_id: str, queue: str = DEFAULT_QUEUE, celery: Celery | None = None) -> None:
    """Send a job id to the workers. Call only after the job row is committed.

    `celery` is the caller's producer (the web app builds one from its own Settings); default: the
    process-wide one from get_settings().
    """
    (celery or producer()).send_task(ANIMATE_TASK, args=[job_id], queue=queue)
