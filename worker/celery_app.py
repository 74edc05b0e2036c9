"""The Celery app of the workers, configured from the same settings as the web tier's producer.

Start one process per GPU: `CUDA_VISIBLE_DEVICES=N vivify worker` (solo pool, concurrency 1).
Nothing heavy is imported here; the animator loads in the worker process (worker/model_cache.py).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from app.core.config import Settings, get_settings
from app.queue import ANIMATE_TASK, DEFAULT_QUEUE, celery_config

RECONCILE_TASK = "vivify.reconcile"
PURGE_TASK = "vivify.purge_expired"
MAINTENANCE_QUEUE = "maintenance"
QUEUES = (DEFAULT_QUEUE, MAINTENANCE_QUEUE)
PURGE_EVERY_S = 600.0


def reconcile_every_s(settings: Settings) -> float:
    """Check at least three times per staleness window, at most once a minute."""
    return max(1.0, min(60.0, settings.stale_job_after_s / 3))


def make_celery(settings: Settings) -> Celery:
    celery = Celery("vivify", include=["worker.tasks", "worker.maintenance"])
    celery.conf.update(celery_config(settings))
    celery.conf.update(
        # Each queue on its own direct exchange, as Celery's automatic queues (and the web's producer) do:
        # a shared exchange and key would copy every message into both queues.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_routes={
            ANIMATE_TASK: {"queue": DEFAULT_QUEUE},
            RECONCILE_TASK: {"queue": MAINTENANCE_QUEUE},
            PURGE_TASK: {"queue": MAINTENANCE_QUEUE},
        },
        # Short maintenance tasks must not pile up behind each other if no worker consumes them for a while.
        beat_schedule={
            "reconcile-stale-jobs": {
                "task": RECONCILE_TASK,
                "schedule": reconcile_every_s(settings),
                "options": {"expires": reconcile_every_s(settings)},
            },
            "purge-expired-jobs": {
                "task": PURGE_TASK,
                "schedule": PURGE_EVERY_S,
                "options": {"expires": PURGE_EVERY_S},
            },
        },
        beat_schedule_filename=str((settings.data_dir / "celerybeat-schedule").resolve()),
    )
    return celery


app = make_celery(get_settings())


@signals.worker_ready.connect
def _warm_up(sender: Any = None, **_: Any) -> None:
    """Load the animator before the first job, in a solo-pool worker that consumes the animate queue.

    Only the solo pool runs tasks in this process; a prefork parent must not load a model (CUDA does
    not survive fork), so its children load lazily on their first task.
    """
    try:
        queues = {q.name for q in sender.task_consumer.queues}
        solo = type(sender.pool).__module__.endswith(".solo")
    except AttributeError:
        return
    if solo and DEFAULT_QUEUE in queues:
        from worker import model_cache

        model_cache.get_animator(get_settings())
