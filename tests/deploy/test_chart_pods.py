"""What the chart's pods must be: probes, GPU requests, grace periods, one beat, security contexts."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import DEFAULT_TIME_LIMIT_S, HARD_LIMIT_GRACE_S, Settings
from models.diffusion.families import FAMILIES, resolve_family
from tests.deploy.chart import CHART, example, named, of_kind, pod_env, pod_specs, render, settings_of

VALUES_FILES: dict[str, dict[str, Any]] = {"defaults": {}, "multi-gpu example": example("multi-gpu.yaml")}
WITH_TRIAL = {
    **VALUES_FILES,
    "trial": {"secrets": {"databaseUrl": "", "brokerUrl": ""}, "trial": {"enabled": True}},
}


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in spec["containers"] if c["name"] == name]
    return found


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def test_web_probes_readyz_and_healthz_and_scales_on_cpu() -> None:
    objects = render()
    web = named(objects, "Deployment", "-web")
    c = container(web["spec"]["template"]["spec"], "web")
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    hpa = named(objects, "HorizontalPodAutoscaler", "-web")
    assert hpa["spec"]["scaleTargetRef"]["name"] == web["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "replicas" not in web["spec"]  # the HPA owns the count


def test_web_pods_never_migrate() -> None:
    objects = render()
    web = named(objects, "Deployment", "-web")
    c = container(web["spec"]["template"]["spec"], "web")
    assert c["args"][0] == "web" and "--migrate" not in c["args"]
    config = named(objects, "ConfigMap", "-config")
    assert config["data"]["VIVIFY_MIGRATE_ON_START"] == "false"
    Settings(_env_file=None, migrate_on_start=config["data"]["VIVIFY_MIGRATE_ON_START"])  # a valid value


@pytest.mark.parametrize("case", VALUES_FILES)
def test_each_gpu_worker_requests_one_gpu_and_portrait_none(case: str) -> None:
    values = VALUES_FILES[case]
    objects = render(values)
    gpu = named(objects, "Deployment", "-worker-diffusion")["spec"]["template"]["spec"]
    worker = container(gpu, "worker")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == 1
    wanted = {**render_values(values)["workers"]["diffusion"]}
    assert gpu.get("nodeSelector", {}) == wanted["nodeSelector"]
    assert gpu["tolerations"] == wanted["tolerations"]
    portrait = named(objects, "Deployment", "-worker-portrait")["spec"]["template"]["spec"]
    assert "initContainers" not in portrait
    for c in portrait["containers"]:
        assert "nvidia.com/gpu" not in str(c["resources"])


def render_values(values: dict[str, Any]) -> dict[str, Any]:
    import helm_python

    with helm_python.Chart.load(CHART) as chart:
        return chart.merge_values(values)


def test_weights_come_from_an_init_container_and_the_worker_runs_offline() -> None:
    values = {"hfToken": {"existingSecret": "hf"}}
    spec = named(render(values), "Deployment", "-worker-diffusion")["spec"]["template"]["spec"]
    (fetch,) = spec["initContainers"]
    assert fetch["args"] == ["fetch-model"]
    assert env_of(fetch)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert "HF_HUB_OFFLINE" not in env_of(fetch)  # fetch-model refuses to run offline
    worker = container(spec, "worker")
    assert env_of(worker)["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in env_of(worker)
    cache = {m["mountPath"]: m["name"] for m in fetch["volumeMounts"]}["/models/hf"]
    assert {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}["/models/hf"] == cache
    (volume,) = [v for v in spec["volumes"] if v["name"] == cache]
    assert "persistentVolumeClaim" in volume
    local = named(render(example("multi-gpu.yaml")), "Deployment", "-worker-diffusion")
    (volume,) = [v for v in local["spec"]["template"]["spec"]["volumes"] if v["name"] == cache]
    assert volume["hostPath"]["path"] == "/mnt/nvme/vivify-models"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_grace_period_follows_the_family_time_limit(family: str) -> None:
    """A worker told to stop gets its clip's whole hard limit to finish it, whatever the family."""
    objects = render({"workers": {"diffusion": {"family": family}}})
    spec = named(objects, "Deployment", "-worker-diffusion")["spec"]["template"]["spec"]
    _, hard = Settings(_env_file=None).time_limits(FAMILIES[family].time_limit_s)
    assert hard < spec["terminationGracePeriodSeconds"] <= hard + 120
    pre_stop = container(spec, "worker")["lifecycle"]["preStop"]["exec"]["command"]
    assert "kill -TERM 1" in pre_stop[-1]  # Celery's warm shutdown, then wait for the process to end
    portrait = named(objects, "Deployment", "-worker-portrait")["spec"]["template"]["spec"]
    _, hard = Settings(_env_file=None).time_limits(None)
    assert hard < portrait["terminationGracePeriodSeconds"] <= hard + 120


def test_the_chart_time_limits_are_the_code_s() -> None:
    limits = render_values({})["timeLimits"]
    assert limits["families"] == {name: f.time_limit_s for name, f in FAMILIES.items()}
    assert limits["cpuSeconds"] == DEFAULT_TIME_LIMIT_S
    assert limits["hardLimitGraceSeconds"] == HARD_LIMIT_GRACE_S


@pytest.mark.parametrize("case", VALUES_FILES)
def test_the_worker_family_is_the_one_of_the_site_model(case: str) -> None:
    values = render_values(VALUES_FILES[case])
    _, family = resolve_family(values["site"]["model"] or None, None)
    assert values["workers"]["diffusion"]["family"] == family.name


def test_running_workers_are_protected_by_a_disruption_budget() -> None:
    objects = render()
    for deployment in of_kind(objects, "Deployment"):
        if "-worker-" not in deployment["metadata"]["name"]:
            continue
        pdb = named(objects, "PodDisruptionBudget", deployment["metadata"]["name"])
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_exactly_one_beat_even_during_a_rollout() -> None:
    objects = render()
    beats = [
        d
        for d in of_kind(objects, "Deployment")
        if "--beat" in d["spec"]["template"]["spec"]["containers"][0]["args"]
    ]
    (beat,) = beats
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}  # the old pod is gone before the new starts
    assert not any(
        o["kind"] == "HorizontalPodAutoscaler"
        and o["spec"]["scaleTargetRef"]["name"] == beat["metadata"]["name"]
        for o in objects
    )
    events = named(objects, "Deployment", "-events")
    args = events["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--queues") + 1] == "webhooks"


WRITABLE = {"/tmp", "/var/lib/vivify", "/home/vivify/.cache"}


@pytest.mark.parametrize("case", WITH_TRIAL)
def test_every_pod_is_locked_down(case: str) -> None:
    values = WITH_TRIAL[case]
    objects = render(values)
    specs = pod_specs(objects)
    assert len(specs) >= 6
    for where, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for m in c.get("volumeMounts", []):
                kind = set(volumes[m["name"]]) - {"name"}
                assert kind <= {"emptyDir", "persistentVolumeClaim", "hostPath"}, (where, m)
            if where.startswith(("Deployment/demo-vivify-web", "Deployment/demo-vivify-worker")):
                config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
                gpu = where.endswith("-worker-diffusion")
                for cache in ("TRITON_CACHE_DIR", "CUDA_CACHE_PATH", *(["HF_HOME"] if gpu else [])):
                    assert any(config[cache].startswith(m["mountPath"]) for m in c["volumeMounts"]), cache
                assert {m["mountPath"] for m in c["volumeMounts"]} >= WRITABLE, where


@pytest.mark.parametrize("case", WITH_TRIAL)
def test_every_vivify_container_starts_with_valid_settings_and_an_object_store(case: str) -> None:
    """What each container's environment makes of the app's settings, as the process would read them."""
    from app.core.storage import S3Store, make_store

    values = WITH_TRIAL[case]
    objects = render(values)
    checked = 0
    for where, spec in pod_specs(objects).items():
        for c in spec["containers"] + spec.get("initContainers", []):
            if not c.get("envFrom"):
                continue  # the trial backends: not Vivify
            settings = settings_of(pod_env(objects, c))
            assert settings.is_production and settings.resolved_broker_url.startswith("redis://"), where
            assert settings.resolved_database_url.startswith("postgresql+psycopg://"), where
            assert isinstance(make_store(settings), S3Store), where
            checked += 1
    assert checked >= 7


def test_a_change_of_settings_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        objects = render(values)
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]
            for d in of_kind(objects, "Deployment")
        }

    before, after = checksums({}), checksums({"site": {"model": "Lightricks/LTX-Video"}})
    assert len(before) == 1 and len(after) == 1 and before != after
    assert checksums({}) == before  # and nothing else: a render does not roll them by itself
