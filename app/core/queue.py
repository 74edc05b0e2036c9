"""The queue contract shared by the web tier, the worker and the CLI: queue names, task names, which
queues a worker consumes, and the producer side. The web tier enqueues by task name and never imports
worker/.

`celery_config()` is shared with worker/celery_app.py so producer and consumer always agree.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Any

from celery import Celery

from app.core.config import Settings, get_settings


class QueueName(str, enum.Enum):
    """The fixed queues. Each animator (and model) also has its own, built by queue_for()."""

    # Where jobs went before one queue per animator; every animate worker still drains it.
    ANIMATE = "animate"
    MAINTENANCE = "maintenance"  # beat's periodic tasks
    WEBHOOKS = "webhooks"  # event deliveries, for a light threads-pool consumer

    def __str__(self) -> str:  # the name itself in f-strings, as enum.StrEnum does (Python 3.11+)
        return self.value


class TaskName(str, enum.Enum):
    ANIMATE = "vivify.animate"
    WEBHOOK = "vivify.webhook"
    RECONCILE = "vivify.reconcile"
    PURGE_EXPIRED = "vivify.purge_expired"

    def __str__(self) -> str:
        return self.value


# The queue of every task but ANIMATE, whose queue depends on the animator (animate_queue).
TASK_QUEUES: dict[TaskName, QueueName] = {
    TaskName.WEBHOOK: QueueName.WEBHOOKS,
    TaskName.RECONCILE: QueueName.MAINTENANCE,
    TaskName.PURGE_EXPIRED: QueueName.MAINTENANCE,
}

# Celery message priorities. On Redis, kombu keeps one list per priority step and a worker pops the
# lowest number first, so 0 is served first (the opposite of RabbitMQ). It is approximate: a worker
# that already holds a prefetched message runs it first, and priority only orders messages within a
# queue; across queues a worker reads them in the order it was given (queue_order_strategy=priority).
PRIORITY_PREVIEW = 0
PRIORITY_DEFAULT = 3
PRIORITY_LONG = 6
# Animators whose clips take seconds (CPU previews); anything else is treated as long GPU work.
SHORT_ANIMATORS = frozenset({"portrait", "push-in"})
LONG_ANIMATORS = frozenset({"diffusion"})


QUEUE_NAME_MAX = 64  # Job.queue's column width


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")[:limit] or "x"


def queue_for(animator: str, model: str | None = None) -> str:
    """The queue of jobs for one animator (and model): `animate.portrait`, `animate.diffusion.svd-xt`.

    A worker consumes the queue of the animator it has loaded, and the web tier sends each job to the
    queue of the animator it asks for, so a job only ever reaches a worker that can run it.
    For a plug-in (`package.module:Class`) the class name is used.
    """
    queue = f"{QueueName.ANIMATE.value}.{_slug(animator.rsplit(':', 1)[-1], 24)}"
    if model:
        # The last path part of a hub id or folder: "stabilityai/stable-video-diffusion-img2vid-xt".
        queue += "." + _slug(model.rstrip("/").rsplit("/", 1)[-1], QUEUE_NAME_MAX - len(queue) - 1)
    return queue


def animate_queue(settings: Settings) -> str:
    """The queue of the animator (and model) these settings load."""
    return queue_for(settings.animator, settings.model or None)


def worker_queues(
    settings: Settings, *, animate: bool = True, maintenance: bool = True, webhooks: bool = False
) -> tuple[str, ...]:
    """The queues a worker consumes, in the order it reads them: the shared `animate` queue and the
    queue of the animator these settings load, maintenance unless left to another worker, webhooks when
    asked. The one answer for `vivify worker`, `vivify up` and the worker's Celery app."""
    queues: list[str] = []
    if animate:
        queues += [QueueName.ANIMATE.value, animate_queue(settings)]
    if maintenance:
        queues.append(QueueName.MAINTENANCE.value)
    if webhooks:
        queues.append(QueueName.WEBHOOKS.value)
    return tuple(dict.fromkeys(queues))


def priority_for(animator: str) -> int:
    """Short previews jump ahead of long diffusion jobs (lower number first, see above)."""
    if animator in SHORT_ANIMATORS:
        return PRIORITY_PREVIEW
    if animator in LONG_ANIMATORS:
        return PRIORITY_LONG
    return PRIORITY_DEFAULT


def celery_config(settings: Settings) -> dict[str, Any]:
    broker = settings.resolved_broker_url
    transport: dict[str, Any] = {}
    if broker.startswith("filesystem://"):
        import app.core.broker_fs  # noqa: F401  registers the vivifyfs:// transport (atomic writes)

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
        transport = {
            "visibility_timeout": settings.broker_visibility_timeout_s,
            # One Redis list per priority 0-9 (0 popped first) and queues read in the order given.
            "priority_steps": list(range(10)),
            "queue_order_strategy": "priority",
        }
    return {
        "broker_url": broker,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": QueueName.ANIMATE.value,
        # The job row is the source of truth; no result backend.
        "task_ignore_result": True,
        "result_backend": None,
        # Long GPU work: ack only after the task ran, redeliver if the worker dies, one job at a time.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
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


def enqueue_webhook(
    url: str, event: str, payload: dict[str, Any], msg_id: str, celery: Celery | None = None
) -> None:
    """Send one webhook event to the delivery workers (worker/webhooks.py) under its webhook-id."""
    from app.core.webhooks import celery_argsrepr

    (celery or producer()).send_task(
        TaskName.WEBHOOK.value,
        args=[url, event, payload, msg_id],
        # Celery logs a task's args: the URL may carry credentials, so the log gets it redacted.
        argsrepr=celery_argsrepr(url, event, payload, msg_id),
        kwargsrepr="{}",
        queue=QueueName.WEBHOOKS.value,
    )


def enqueue_job(
    job_id: str,
    queue: str = QueueName.ANIMATE.value,
    celery: Celery | None = None,
    priority: int | None = None,
) -> None:
    """Send a job id to the workers. Call only after the job row is committed.

    `celery` is the caller's producer (the web app builds one from its own Settings); default: the
    process-wide one from get_settings(). `priority`: see PRIORITY_PREVIEW.
    """
    options: dict[str, Any] = {"queue": queue}
    if priority is not None:
        options["priority"] = priority
    (celery or producer()).send_task(TaskName.ANIMATE.value, args=[job_id], **options)
