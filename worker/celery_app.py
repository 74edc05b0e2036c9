"""The Celery app of the workers, configured from the same settings as the web tier's producer.

Start one process per GPU: `CUDA_VISIBLE_DEVICES=N vivify worker` (solo pool, concurrency 1).
Nothing heavy is imported here; the animator loads in the worker process (worker/model_cache.py).

Queues: one per animator and model (`animate.portrait`, `animate.diffusion.<model>`, see
app.queue.queue_for); a worker consumes the one of the animator it loads. `webhooks` and
`maintenance` are short tasks for a separate light consumer (threads pool), so an event never waits
behind a render.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from app.core.config import Settings, get_settings
from app.queue import ANIMATE_TASK, DEFAULT_QUEUE, WEBHOOK_QUEUE, WEBHOOK_TASK, celery_config, queue_for

RECONCILE_TASK = "vivify.reconcile"
PURGE_TASK = "vivify.purge_expired"
MAINTENANCE_QUEUE = "maintenance"
PURGE_EVERY_S = 600.0


def reconcile_every_s(settings: Settings) -> float:
    """Check at least three times per staleness window, at most once a minute."""
    return max(1.0, min(60.0, settings.stale_job_after_s / 3))


def animate_queue(settings: Settings) -> str:
    """The queue of the animator this worker's settings load."""
    return queue_for(settings.animator, settings.model)


def worker_queues(settings: Settings) -> tuple[str, ...]:
    # DEFAULT_QUEUE: where jobs went before one queue per animator; workers still drain it.
    return tuple(dict.fromkeys((DEFAULT_QUEUE, animate_queue(settings), MAINTENANCE_QUEUE, WEBHOOK_QUEUE)))


def make_celery(settings: Settings) -> Celery:
    celery = Celery("vivify", include=["worker.tasks", "worker.maintenance", "worker.webhooks"])
    queues = worker_queues(settings)
    celery.conf.update(celery_config(settings))
    celery.conf.update(
        # Each queue on its own direct exchange, as Celery's automatic queues (and the web's producer) do:
        # a shared exchange and key would copy every message into both queues.
        # Other animators' queues (`-Q animate.diffusion` on this app) are made the same way on demand.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in queues],
        task_create_missing_queues=True,
        task_routes={
            ANIMATE_TASK: {"queue": animate_queue(settings)},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
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
    if solo and animate_queue(get_settings()) in queues:
        from worker import model_cache

        model_cache.get_animator(get_settings())


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """Prometheus metrics of this worker process (Settings.worker_metrics_port; 0 = off)."""
    port = get_settings().worker_metrics_port
    if port:
        from worker import metrics

        metrics.serve(port)


@signals.setup_logging.connect
def _json_logs(**_: Any) -> None:
    """Connected, so Celery leaves logging to us: JSON lines like the web tier, job id on each line."""
    from app.core.logging import configure_logging

    configure_logging(get_settings().log_level)
