"""The ScaledObjects count what the workers consume: the queue names come from the same contract the web
tier and the workers use (app/core/queue.py), the priority lists from kombu's own naming, and a real
Redis shows that a job of any priority, waiting or running, keeps its workers from zero."""

from __future__ import annotations

import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu.transport.redis import Channel
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

import migrations
from app.core.config import Settings
from app.core.queue import animate_queue, celery_config, enqueue_job, make_producer, queue_for
from app.core.tables import Job, JobStatus, utcnow
from tests.deploy.chart import example, named, of_kind, render, settings_of

# KEDA's redis scaler counts a key with this script (pkg/scalers/redis_scaler.go, KEDA v2.20.2), so a
# queue is measured here exactly as the operator will measure it.
KEDA_REDIS_COUNT = """
local listName = KEYS[1]
local listType = redis.call('type', listName).ok
if listType == 'zset' then return redis.call('zcard', listName)
elseif listType == 'set' then return redis.call('scard', listName)
elseif listType == 'hash' then return redis.call('hlen', listName)
elseif listType == 'list' or listType == 'none' then return redis.call('llen', listName)
else return redis.error_reply('ERR unsupported key type: ' .. listType) end
"""


def env_settings(env: dict[str, str], **overrides: str) -> Settings:
    """The Settings of a pod with this environment; the Secret's part is a production-strength key."""
    pod = {"VIVIFY_SECRET_KEY": "k" * 48, **env, **{f"VIVIFY_{k.upper()}": v for k, v in overrides.items()}}
    return settings_of(pod)


def priority_lists(queue: str, broker_url: str) -> set[str]:
    """Every Redis list kombu keeps a queue's messages in, for the priority steps Vivify configures."""
    steps = celery_config(env_settings({}, broker_url=broker_url))["broker_transport_options"][
        "priority_steps"
    ]
    channel = types.SimpleNamespace(sep=Channel.sep, priority_steps=steps)
    channel.priority = lambda n: Channel.priority(channel, n)  # type: ignore[attr-defined]
    return {Channel._q_for_pri(channel, queue, p) for p in range(max(steps) + 1)}


def scaled_queues(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {so["metadata"]["annotations"]["vivify.io/queue"]: so for so in of_kind(objects, "ScaledObject")}


CASES = {"defaults": {}, "multi-gpu example": example("multi-gpu.yaml")}


@pytest.mark.parametrize("case", CASES)
def test_one_scaled_object_per_queue_the_site_sends_to_and_a_worker_consumes(case: str) -> None:
    objects = render(CASES[case])
    config = named(objects, "ConfigMap", "-config")["data"]
    web = env_settings(config)
    sent_to = {queue_for(a, web.model_for(a)) for a in web.offered_animators}
    scaled = scaled_queues(objects)
    assert set(scaled) == sent_to
    for queue, so in scaled.items():
        deployment = named(objects, "Deployment", so["spec"]["scaleTargetRef"]["name"])
        worker = next(
            c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "worker"
        )
        pod_env = {**config, **{e["name"]: e["value"] for e in worker["env"] if "value" in e}}
        assert animate_queue(env_settings(pod_env)) == queue  # what that Deployment's worker consumes
        assert so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]  # the CRD's CEL rule


@pytest.mark.parametrize("case", CASES)
def test_every_priority_list_and_the_running_jobs_are_counted(case: str) -> None:
    for queue, so in scaled_queues(render(CASES[case])).items():
        triggers = so["spec"]["triggers"]
        lists = {t["metadata"]["listName"] for t in triggers if t["type"] == "redis"}
        assert lists == priority_lists(queue, "redis://localhost:6379/0")
        assert queue in lists and f"{queue}\x06\x166" in lists  # a diffusion job's priority, 6
        names = [t["name"] for t in triggers]
        modifiers = so["spec"]["advanced"]["scalingModifiers"]
        # The formula is the sum of every trigger, each once.
        assert sorted(term.strip() for term in modifiers["formula"].split("+")) == sorted(names)
        assert modifiers["activationTarget"] == "0" and so["spec"]["minReplicaCount"] in (0, 1)
        (running,) = [t for t in triggers if t["type"] == "postgresql"]
        assert f"queue = '{queue}'" in running["metadata"]["query"]


# Hub ids and folder names, any printable ASCII (the Hub allows letters, digits, "-", "_" and "." only).
model_names = st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"]), max_size=90)


@settings(max_examples=40)
@given(
    animator=st.sampled_from(["diffusion", "my_pkg.animators:Fancy_Model", "Weird.Animator:X" * 3]),
    org=model_names,
    model=model_names,
)
def test_the_chart_names_a_queue_as_the_code_does(animator: str, org: str, model: str) -> None:
    hub_id = f"{org}/{model}/" if org else model
    values = {
        "site": {"animator": animator, "model": hub_id, "extraAnimators": ["portrait"]},
        "workers": {animator: {"gpu": True, "family": "svd", "minReplicas": 0, "maxReplicas": 2}},
    }
    objects = render(values)
    assert set(scaled_queues(objects)) == {queue_for(animator, hub_id or None), queue_for("portrait")}


@pytest.fixture
def broker(redis_proc: Any) -> str:
    url = f"redis://{redis_proc.host}:{redis_proc.port}/3"
    redis.Redis.from_url(url).flushdb()
    return url


def keda_count(client: redis.Redis, so: dict[str, Any], running: int) -> int:
    """The ScaledObject's formula (a sum) over its triggers, read as KEDA reads them."""
    total = running
    for t in so["spec"]["triggers"]:
        if t["type"] == "redis":
            total += int(client.eval(KEDA_REDIS_COUNT, 1, t["metadata"]["listName"]))
    return total


@pytest.mark.parametrize("priority", range(10))
def test_a_queued_job_of_any_priority_makes_the_count_non_zero(broker: str, priority: int) -> None:
    objects = render()
    config = named(objects, "ConfigMap", "-config")["data"]
    web = env_settings(config, broker_url=broker)
    client = redis.Redis.from_url(broker)
    for queue, so in scaled_queues(objects).items():
        assert keda_count(client, so, running=0) == 0
        enqueue_job(f"job-{priority}", queue=queue, celery=make_producer(web), priority=priority)
        assert keda_count(client, so, running=0) == 1  # counted, and once
        if priority:
            assert client.llen(queue) == 0  # what a trigger on the plain list alone would read
        client.flushdb()


def test_the_running_query_counts_running_jobs_of_its_queue_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrations.upgrade(url)
    engine = create_engine(url)
    so = next(iter(scaled_queues(render()).values()))
    queue = so["metadata"]["annotations"]["vivify.io/queue"]
    (trigger,) = [t for t in so["spec"]["triggers"] if t["type"] == "postgresql"]

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(trigger["metadata"]["query"])).scalar_one())

    assert count() == 0
    with Session(engine) as session:
        for i, (q, status) in enumerate(
            [(queue, JobStatus.RUNNING), (queue, JobStatus.QUEUED), ("animate.other", JobStatus.RUNNING)]
        ):
            session.add(
                Job(
                    id=f"j{i}",
                    visitor_id="v",
                    seed=1,
                    animator="diffusion",
                    queue=q,
                    status=status,
                    expires_at=utcnow() + timedelta(hours=1),
                )
            )
        session.commit()
    assert count() == 1
