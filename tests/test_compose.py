"""The production compose file and GPU Dockerfile, checked by reading (no Docker engine here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
    soft, hard = settings.time_limits(1800)  # unset limits follow the family: Wan's, the longest
    assert soft < hard < settings.broker_visibility_timeout_s


def test_the_dockerfile_builds_the_worker_on_cuda_with_the_gpu_extra() -> None:
    text = (ROOT / "Dockerfile.gpu").read_text()
    stages = {name: image for image, name in re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)}
    assert stages["worker"].startswith("nvidia/cuda:") and "runtime" in stages["worker"]
    assert not stages["web"].startswith("nvidia/")
    worker_part = text.split("AS worker", 1)[1]
    assert "python3.11" in worker_part and '".[gpu,worker]"' in worker_part and "--index-url" in worker_part
    assert 'install -e ".[gpu' not in text.split("AS worker", 1)[0]  # the web image never installs torch


def test_workers_install_the_identity_model_and_the_web_image_does_not(compose: dict) -> None:
    """The clip check's identity model (the `worker` extra) is in every image that renders, never in the
    web image: the web tier never imports it (an import contract), and need not carry its 130 MB."""
    text = (ROOT / "Dockerfile.gpu").read_text()
    web_part = text.split(" AS web", 1)[1].split("\nFROM ", 1)[0]
    cpu_part = text.split(" AS cpu-worker", 1)[1].split("\nFROM ", 1)[0]
    assert "pip install -e ." in web_part and "worker" not in web_part.split("pip install -e .", 1)[1][:12]
    assert 'pip install -e ".[worker]"' in cpu_part
    assert '".[gpu,worker]"' in text.split(" AS worker", 1)[1]
    targets = {name: svc.get("build", {}).get("target") for name, svc in compose["services"].items()}
    assert (targets["web"], targets["worker"], targets["worker-preview"]) == ("web", "worker", "cpu-worker")
    assert targets["beat"] == targets["webhooks"] == "web"  # they never render a clip


def _apt_installs(dockerfile_part: str) -> set[str]:
    """The packages the `apt-get install` commands of a Dockerfile part name."""
    commands = dockerfile_part.replace("\\\n", " ").replace("&&", "\n").splitlines()
    words = [c.removeprefix("RUN ").split() for c in commands]
    return {w for ws in words if ws[:2] == ["apt-get", "install"] for w in ws[2:] if not w.startswith("-")}


def test_the_worker_image_can_build_tritons_launcher_for_torch_compile() -> None:
    """Triton compiles a C launcher against Python.h at the first torch.compile: the CUDA runtime base
    has neither a compiler nor headers, so the worker stage installs them, for the Python it runs."""
    web_part, worker_part = (ROOT / "Dockerfile.gpu").read_text().split(" AS worker", 1)
    packages = _apt_installs(worker_part)
    assert {"gcc", "libc6-dev", "python3.11-dev"} <= packages, packages  # gcc only recommends libc6-dev
    assert "python3.11 -m venv /opt/venv" in worker_part  # the headers match the venv's interpreter
    assert "gcc" not in _apt_installs(web_part)  # the web image stays small


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


def _longest_hard_limit(env: dict[str, str]) -> float:
    """The hard limit a worker with these compose defaults can get: unset, it follows the family, and
    the longest family limit is the one to wait for."""
    from models.diffusion.families import FAMILIES

    settings = Settings(_env_file=None, task_time_limit_s=_default(env["VIVIFY_TASK_TIME_LIMIT_S"]))
    return max(settings.time_limits(f.time_limit_s)[1] for f in FAMILIES.values())


def test_workers_get_time_to_finish_their_job_on_stop(compose: dict) -> None:
    hard_limit = _longest_hard_limit(env_of(compose, "worker"))
    assert hard_limit == 1860  # Wan, 14 B parameters
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
        assert _seconds(svc["stop_grace_period"]) > _longest_hard_limit(env)
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


COMPOSE_FILES = ("docker-compose.yml", "docker-compose.worker.yml")
# docker-compose.worker.yml refuses to resolve without the site's addresses.
SITE_ENV = {"VIVIFY_DATABASE_URL": "postgresql+psycopg://x", "VIVIFY_BROKER_URL": "redis://x"}


def _gpu_services(compose: dict) -> set[str]:
    """The services that reserve an NVIDIA GPU."""
    return {
        name
        for name, svc in compose["services"].items()
        for device in svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if device.get("driver") == "nvidia"
    }


def _resolved(path: Path, **env: str) -> dict:
    """The file as docker-compose 1.29 resolves it (interpolated, merged, paths made absolute)."""
    result = subprocess.run(
        ["docker-compose", "-f", str(path), "config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **SITE_ENV, **env},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_only_gpu_workers_get_the_hub_token_and_only_as_a_secret(file: str) -> None:
    compose = yaml.safe_load((ROOT / file).read_text())
    assert compose["secrets"]["hf_token"] == {"file": "${HF_TOKEN_FILE:-./secrets/hf_token}"}
    gpus = _gpu_services(compose)
    assert gpus and (file != "docker-compose.yml" or gpus == {"worker"})
    for name, svc in compose["services"].items():
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        # huggingface_hub reads HF_TOKEN before HF_TOKEN_PATH: no environment carries a token.
        assert not {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} & set(env), name
        if name in gpus:
            assert svc["secrets"] == [{"source": "hf_token", "target": "hf_token"}], name
            assert env["HF_TOKEN_PATH"] == "/run/secrets/hf_token", name  # where compose mounts `hf_token`
            assert env["HF_HUB_OFFLINE"] == "${HF_HUB_OFFLINE:-0}", name
        else:
            assert "secrets" not in svc and not any(k.startswith("HF_") for k in env), name


def test_huggingface_hub_reads_the_token_path_and_offline_switch_we_set(tmp_path: Path) -> None:
    """The two variables the workers get are the ones this huggingface_hub reads (fresh process: the
    library reads them at import); an empty token file means no token, as for an ungated model."""
    token = tmp_path / "hf_token"
    code = (
        "from huggingface_hub import constants, get_token\n"
        "print(constants.HF_TOKEN_PATH, constants.HF_HUB_OFFLINE, get_token())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}

    def read(content: str, offline: str) -> list[str]:
        token.write_text(content)
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "HF_TOKEN_PATH": str(token), "HF_HUB_OFFLINE": offline, "HF_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()

    assert read("hf_example\n", "1") == [str(token), "True", "hf_example"]
    assert read("", "0") == [str(token), "False", "None"]


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_compose_resolves_the_secret_without_the_token_file(file: str, tmp_path: Path) -> None:
    """docker-compose 1.29 `config` does not need the secret file: a copy of the compose file in an
    empty folder (a fresh checkout has no ./secrets/) resolves, and HF_TOKEN_FILE moves the source."""
    copy = tmp_path / file
    copy.write_text((ROOT / file).read_text())
    default = _resolved(copy)
    assert default["secrets"]["hf_token"] == {"file": str(tmp_path / "secrets" / "hf_token")}
    assert not (tmp_path / "secrets").exists()
    moved = _resolved(copy, HF_TOKEN_FILE="/etc/vivify/hf_token", HF_HUB_OFFLINE="1")
    assert moved["secrets"]["hf_token"] == {"file": "/etc/vivify/hf_token"}
    gpus = _gpu_services(moved)
    assert gpus == _gpu_services(yaml.safe_load(copy.read_text()))
    for name in gpus:
        assert moved["services"][name]["environment"]["HF_HUB_OFFLINE"] == "1"
        assert moved["services"][name]["environment"]["HF_TOKEN_PATH"] == "/run/secrets/hf_token"
        assert moved["services"][name]["secrets"] == [{"source": "hf_token", "target": "hf_token"}]
    for name in set(moved["services"]) - gpus:
        assert "secrets" not in moved["services"][name], name
