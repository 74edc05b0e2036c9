"""The Celery app's configuration: queues, routing, beat schedule and the long-GPU-work settings."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.core.queue import QueueName, TaskName, worker_queues
from models.base import AnimationRequest
from models.registry import create_animator
from worker.celery_app import make_celery, reconcile_every_s


@pytest.fixture
def celery(tmp_path):
    settings = Settings(
        _env_file=None, data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0", stale_job_after_s=900
    )
    return make_celery(settings)


def test_long_gpu_work_settings(celery) -> None:
    conf = celery.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert (
        conf.task_soft_time_limit < conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]
    )
    assert conf.task_ignore_result  # the job row is the state, not a result backend


def test_time_limits_follow_the_model_family(tmp_path) -> None:
    from worker.celery_app import animator_time_limit_s, make_celery

    base = {"_env_file": None, "data_dir": tmp_path, "broker_url": "redis://127.0.0.1:6379/0"}
    wan = Settings(**base, animator="diffusion", model="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    assert animator_time_limit_s(wan) == 1800  # a 14 B model: minutes per clip
    conf = make_celery(wan).conf
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (1800, 1860)
    assert animator_time_limit_s(Settings(**base)) is None  # the CPU animator: the default 600 s
    assert make_celery(Settings(**base)).conf.task_time_limit == 660


def test_each_queue_has_its_own_exchange_so_no_message_is_copied(celery) -> None:
    queues = {q.name: q for q in celery.conf.task_queues}
    # The configured animator's own queue (default: portrait), the old shared one, and the short tasks.
    assert set(queues) == {"animate", "animate.portrait", "maintenance", "webhooks"}
    assert all(q.exchange.name == q.routing_key == name for name, q in queues.items())
    routes = celery.conf.task_routes
    assert routes[TaskName.ANIMATE]["queue"] == "animate.portrait"
    assert routes[TaskName.WEBHOOK]["queue"] == "webhooks"
    assert routes[TaskName.RECONCILE]["queue"] == routes[TaskName.PURGE_EXPIRED]["queue"] == "maintenance"


def test_a_worker_routes_to_the_queue_of_its_animator_and_model(tmp_path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path, animator="diffusion", model="org/svd-xt")
    assert make_celery(s).conf.task_routes[TaskName.ANIMATE]["queue"] == "animate.diffusion.svd-xt"


def test_the_app_declares_the_queues_the_cli_starts_its_workers_on(tmp_path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path, animator="diffusion", model="org/svd-xt")
    declared = [q.name for q in make_celery(s).conf.task_queues]
    assert declared == list(worker_queues(s, webhooks=True))
    assert declared == ["animate", "animate.diffusion.svd-xt", QueueName.MAINTENANCE, QueueName.WEBHOOKS]
    assert worker_queues(s, maintenance=False) == ("animate", "animate.diffusion.svd-xt")
    assert worker_queues(s, animate=False, maintenance=False, webhooks=True) == ("webhooks",)


def test_beat_reconciles_every_minute_and_purges_every_ten(celery) -> None:
    schedule = {entry["task"]: entry["schedule"] for entry in celery.conf.beat_schedule.values()}
    assert schedule == {TaskName.RECONCILE: 60.0, TaskName.PURGE_EXPIRED: 600.0}


def test_reconcile_checks_several_times_per_staleness_window() -> None:
    assert reconcile_every_s(Settings(_env_file=None, stale_job_after_s=900)) == 60.0
    assert reconcile_every_s(Settings(_env_file=None, stale_job_after_s=6)) == 2.0


def test_an_animator_can_be_named_by_module_and_class() -> None:
    animator = create_animator("models.push_in:PushInAnimator", zoom=1.2)
    assert animator.name == "push-in" and animator.zoom == 1.2
    assert AnimationRequest().fps == 24
    with pytest.raises(ValueError, match="cannot load animator"):
        create_animator("models.push_in:Nope")
    with pytest.raises(ValueError, match="unknown animator"):
        create_animator("warp-drive")
