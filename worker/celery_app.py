"""The Celery app of the workers, configured from the same settings as the web tier's producer.

Start one process per GPU: `CUDA_VISIBLE_DEVICES=N vivify worker` (solo pool, concurrency 1).
Nothing heavy is imported here; the animator loads in the worker process (worker/model_cache.py),
at start in a solo-pool worker (LoadAnimator below): one that cannot set it up exits before any job.

Queues: one per animator and model (`animate.portrait`, `animate.diffusion.<model>`, see
app.core.queue.queue_for); a worker consumes the one of the animator it loads. `webhooks` and
`maintenance` are short tasks for a separate light consumer (threads pool), so an event never waits
behind a render.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import Celery, bootsteps, signals
from kombu import Exchange, Queue

from app.core.config import Settings, get_settings
from app.core.queue import TASK_QUEUES, TaskName, animate_queue, celery_config, worker_queues

PURGE_EVERY_S = 600.0
# Exit status of a worker whose animator cannot be set up: os.EX_CONFIG, since the causes are mostly
# settings (model, token, offline cache); tells it apart from a crash (1) or Celery's own exits.
EXIT_ANIMATOR_UNAVAILABLE = 78

log = logging.getLogger(__name__)


def reconcile_every_s(settings: Settings) -> float:
    """Check at least three times per staleness window, at most once a minute."""
    return max(1.0, min(60.0, settings.stale_job_after_s / 3))


def animator_time_limit_s(settings: Settings) -> float | None:
    """The time limit per clip the configured animator states, read from the family table without loading
    anything; None for animators that state none (the CPU ones) or a model the start-up load will refuse."""
    if settings.animator != "diffusion":
        return None
    from models.diffusion.families import resolve_family

    try:
        return resolve_family(settings.model, settings.animator_options.get("family"))[1].time_limit_s
    except ValueError:
        return None


def make_celery(settings: Settings) -> Celery:
    celery = Celery("vivify", include=["worker.tasks", "worker.maintenance", "worker.webhooks"])
    # Every queue a worker of these settings may be told to consume (`-Q` picks among them).
    queues = worker_queues(settings, webhooks=True)
    celery.conf.update(celery_config(settings))
    # Consumer-side limits; the task enforces the same pair itself (worker/tasks.py), as the solo pool
    # enforces none.
    soft, hard = settings.time_limits(animator_time_limit_s(settings))
    celery.conf.update(task_soft_time_limit=soft, task_time_limit=hard)
    celery.conf.update(
        # Each queue on its own direct exchange, as Celery's automatic queues (and the web's producer) do:
        # a shared exchange and key would copy every message into both queues.
        # Other animators' queues (`-Q animate.diffusion` on this app) are made the same way on demand.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in queues],
        task_create_missing_queues=True,
        task_routes={
            TaskName.ANIMATE.value: {"queue": animate_queue(settings)},
            **{task.value: {"queue": queue.value} for task, queue in TASK_QUEUES.items()},
        },
        # Short maintenance tasks must not pile up behind each other if no worker consumes them for a while.
        beat_schedule={
            "reconcile-stale-jobs": {
                "task": TaskName.RECONCILE.value,
                "schedule": reconcile_every_s(settings),
                "options": {"expires": reconcile_every_s(settings)},
            },
            "purge-expired-jobs": {
                "task": TaskName.PURGE_EXPIRED.value,
                "schedule": PURGE_EVERY_S,
                "options": {"expires": PURGE_EVERY_S},
            },
        },
        beat_schedule_filename=str((settings.data_dir / "celerybeat-schedule").resolve()),
    )
    celery.steps["worker"].add(LoadAnimator)
    return celery


class LoadAnimator(bootsteps.Step):
    """Sets the animator up while the worker is being built, before any bootstep starts.

    Steps are created after logging is configured and the pool class and queues are known, and before
    any step starts (the Consumer, which connects and consumes, starts last): a worker that cannot run
    its animator never takes a job. worker_ready comes too late (the consumer is already subscribed, and
    Celery's signal dispatch only logs a receiver's exception, so every job then failed); worker_init
    comes before logging is set up. Only in a solo-pool worker that consumes its animator's queue: a
    prefork parent must not load a model (CUDA does not survive fork), its children load lazily.
    """

    name = "vivify.LoadAnimator"

    def include_if(self, parent: Any) -> bool:
        from celery.concurrency.solo import TaskPool as SoloPool

        pool_cls = getattr(parent, "pool_cls", None)
        if not (isinstance(pool_cls, type) and issubclass(pool_cls, SoloPool)):
            return False
        consumed = parent.app.amqp.queues.consume_from or {}
        return animate_queue(get_settings()) in consumed

    def create(self, parent: Any) -> None:
        from models.base import AnimatorUnavailable
        from worker import model_cache

        settings = get_settings()
        try:
            animator = model_cache.get_animator(settings)  # wraps any failure in AnimatorUnavailable
            settings.time_limits(getattr(animator, "time_limit_s", None))  # a folder may state its own
            model_cache.get_guard(settings)  # the clip check's models, before the first job
        except (AnimatorUnavailable, ValueError) as exc:
            exit_animator_unavailable(settings, str(exc))


def exit_animator_unavailable(settings: Settings, message: str) -> None:
    """Log one critical line and end the process now, with EXIT_ANIMATOR_UNAVAILABLE.

    os._exit, not SystemExit (which Celery would let through here too): nothing has started that needs
    stopping, and a thread left behind by a half-done load (a download, a compile) must not keep alive
    a worker that will never serve.
    """
    log.critical(
        "worker cannot start: %s", message, extra={"animator": settings.animator, "model": settings.model}
    )
    logging.shutdown()  # flushes every handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_ANIMATOR_UNAVAILABLE)


app = make_celery(get_settings())


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
