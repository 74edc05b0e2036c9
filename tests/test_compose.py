"""The production compose file and GPU Dockerfile, checked by reading (no Docker engine here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_of(compose: dict, service: str) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"][service]["environment"].items()}


def test_every_service_of_the_production_shape_is_there(compose: dict) -> None:
    assert {"postgres", "redis", "minio", "createbucket", "web", "worker", "beat"} <= set(compose["services"])


def test_redis_persists_with_an_append_only_file(compose: dict) -> None:
    cmd = compose["services"]["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])


def test_the_bucket_is_created_before_web_and_workers_start(compose: dict) -> None:
    script = " ".join(compose["services"]["createbucket"]["command"])
    assert "mc mb --ignore-existing local/vivify" in script
    for service in ("web", "worker", "beat"):
        assert compose["services"][service]["depends_on"]["createbucket"] == {
            "condition": "service_completed_successfully"
        }
        assert compose["services"][service]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert env_of(compose, "web")["VIVIFY_STORAGE_URL"] == "s3://vivify"


def test_workers_reserve_a_gpu_and_can_be_scaled(compose: dict) -> None:
    worker = compose["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] == 1
    # Scaling needs no fixed name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == ["worker", "--no-maintenance"]  # GPU workers leave maintenance to beat
    assert worker["build"]["target"] == "worker"
    assert compose["services"]["web"]["build"]["target"] == "web"  # no CUDA, no torch in the web image


def test_every_process_is_wired_to_the_same_backends(compose: dict) -> None:
    envs = [env_of(compose, s) for s in ("web", "worker", "beat")]
    for key in ("VIVIFY_DATABASE_URL", "VIVIFY_BROKER_URL", "VIVIFY_STORAGE_URL", "VIVIFY_S3_ENDPOINT_URL"):
        assert len({e[key] for e in envs}) == 1, key
    web = envs[0]
    assert (
        web["VIVIFY_DATABASE_URL"].startswith("postgresql+psycopg://")
        and "@postgres:5432/" in web["VIVIFY_DATABASE_URL"]
    )
    assert web["VIVIFY_BROKER_URL"] == "redis://redis:6379/0"
    assert web["VIVIFY_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert web["VIVIFY_ENV"] == "production"
    assert "--migrate" in compose["services"]["web"]["command"]
    beat = compose["services"]["beat"]["command"]
    assert "--beat" in beat and beat[beat.index("--queues") + 1] == "maintenance"


def _default(value: str) -> str:
    m = re.fullmatch(r"\$\{[A-Z_]+:-(.*)\}", value)
    return m.group(1) if m else value


def test_the_defaults_form_valid_settings_and_refuse_the_dev_secret(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env_of(compose, "worker").items():
        monkeypatch.setenv(key, _default(value))
    with pytest.raises(ValueError, match="VIVIFY_SECRET_KEY"):  # the secret was not set
        Settings(_env_file=None)
    monkeypatch.setenv("VIVIFY_SECRET_KEY", "x" * 48)
    settings = Settings(_env_file=None)
    assert settings.is_production and settings.trusted_proxies == []
    assert settings.task_soft_time_limit_s < settings.task_time_limit_s < settings.broker_visibility_timeout_s


def test_the_dockerfile_builds_the_worker_on_cuda_with_the_gpu_extra() -> None:
    text = (ROOT / "Dockerfile.gpu").read_text()
    stages = {name: image for image, name in re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)}
    assert stages["worker"].startswith("nvidia/cuda:") and "runtime" in stages["worker"]
    assert not stages["web"].startswith("nvidia/")
    worker_part = text.split("AS worker", 1)[1]
    assert "python3.11" in worker_part and '".[gpu]"' in worker_part and "--index-url" in worker_part
    assert '".[gpu]"' not in text.split("AS worker", 1)[0]  # the web image never installs torch


def test_docker_compose_config_parses() -> None:
    """Debian's docker-compose (installed by .ci/system-deps) validates the file without an engine."""
    assert shutil.which("docker-compose"), "docker-compose is missing: run .ci/system-deps"
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def _seconds(period: str) -> int:
    m = re.fullmatch(r"(\d+)([sm])", period)
    assert m, period
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def test_one_worker_service_per_model_queue_webhooks_and_flower(compose: dict) -> None:
    services = compose["services"]
    assert {"worker", "worker-preview", "webhooks", "flower"} <= set(services)
    assert env_of(compose, "worker")["VIVIFY_ANIMATOR"] == "${VIVIFY_ANIMATOR:-diffusion}"
    assert env_of(compose, "worker-preview")["VIVIFY_ANIMATOR"] == "portrait"
    assert "deploy" not in services["worker-preview"]  # CPU: no GPU reservation
    # The web tier offers the preview animator, so jobs can be routed to its queue.
    assert _default(env_of(compose, "web")["VIVIFY_EXTRA_ANIMATORS"]) == "portrait"
    hooks = services["webhooks"]["command"]
    assert hooks[hooks.index("--queues") + 1] == "webhooks" and hooks[hooks.index("--pool") + 1] == "threads"
    assert "profiles" not in services["flower"] and services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    for name in ("worker", "worker-preview"):
        assert env_of(compose, name)["VIVIFY_WORKER_METRICS_PORT"] == "9100"


def test_workers_get_time_to_finish_their_job_on_stop(compose: dict) -> None:
    hard_limit = int(_default(env_of(compose, "worker")["VIVIFY_TASK_TIME_LIMIT_S"]))
    assert _seconds(compose["services"]["worker"]["stop_grace_period"]) > hard_limit


def test_workers_on_other_hosts_join_the_same_backends() -> None:
    remote = yaml.safe_load((ROOT / "docker-compose.worker.yml").read_text())
    gpus = {name: svc for name, svc in remote["services"].items() if name.startswith("gpu")}
    assert len(gpus) >= 2
    devices = [
        svc["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for svc in gpus.values()
    ]
    assert sorted(devices) == [["0"], ["1"]]  # one process per GPU, each pinned
    for svc in gpus.values():
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert env["VIVIFY_DATABASE_URL"].startswith("${VIVIFY_DATABASE_URL:?")  # no local backends
        assert env["VIVIFY_BROKER_URL"].startswith("${VIVIFY_BROKER_URL:?")
        assert svc["command"] == ["worker", "--no-maintenance"] and "depends_on" not in svc
        assert _seconds(svc["stop_grace_period"]) > int(_default(env["VIVIFY_TASK_TIME_LIMIT_S"]))
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.worker.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "VIVIFY_DATABASE_URL": "postgresql+psycopg://x",
            "VIVIFY_BROKER_URL": "redis://x",
        },
    )
    assert result.returncode == 0, result.stderr
