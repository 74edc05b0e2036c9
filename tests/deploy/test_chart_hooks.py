"""Migrations run as a hook before any web or worker pod, after the settings they read; no secret sits in
a values file."""

from __future__ import annotations

import base64

import helm_python
import pytest
import yaml

from tests.deploy.chart import CHART, EXAMPLES, hook, named, pod_specs, render

TRIAL = {"secrets": {"databaseUrl": "", "brokerUrl": ""}, "trial": {"enabled": True}}


@pytest.mark.parametrize("upgrade", [False, True], ids=["install", "upgrade"])
def test_migrations_run_before_any_pod_after_the_settings_they_read(upgrade: bool) -> None:
    objects = render(upgrade=upgrade)
    event = "pre-upgrade" if upgrade else "pre-install"
    job = named(objects, "Job", "-migrate")
    job_hook = hook(job)
    assert job_hook is not None and event in job_hook[0]
    spec = job["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["args"] == ["migrate"]
    read = {next(iter(ref.values()))["name"]: ref for ref in c["envFrom"]}
    for kind in ("Secret", "ConfigMap"):
        (source,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] in read]
        source_hook = hook(source)
        assert source_hook is not None and event in source_hook[0], kind
        assert source_hook[1] < job_hook[1], f"the {kind} must exist before the migrations run"
    # Every web and worker pod is a release resource, created only after the pre-* hooks succeeded.
    for where in pod_specs(objects):
        name = where.split("/", 1)[1]
        if name.endswith(("-web", "-beat", "-events")) or "-worker-" in name:
            (obj,) = [o for o in objects if o["metadata"]["name"] == name and o["kind"] == "Deployment"]
            assert hook(obj) is None, name


def test_trial_backends_come_before_the_migrations() -> None:
    objects = render(TRIAL)
    migrate = hook(named(objects, "Job", "-migrate"))
    assert migrate is not None
    for suffix in ("-postgres", "-redis", "-minio"):
        backend = hook(named(objects, "Deployment", suffix))
        assert backend is not None and "pre-install" in backend[0] and backend[1] < migrate[1], suffix
    bucket = hook(named(objects, "Job", "-createbucket"))
    assert bucket is not None and bucket[1] < migrate[1]
    secret = named(objects, "Secret", "-secrets")
    url = base64.b64decode(secret["data"]["VIVIFY_DATABASE_URL"]).decode()
    trial = base64.b64decode(named(objects, "Secret", "-trial")["data"]["password"]).decode()
    assert url == f"postgresql+psycopg://vivify:{trial}@demo-vivify-postgres:5432/vivify" and len(trial) == 32


def test_no_values_file_holds_a_secret() -> None:
    for path in [CHART / "values.yaml", *EXAMPLES.glob("*.yaml")]:
        secrets = (yaml.safe_load(path.read_text()) or {}).get("secrets", {})
        assert {k: v for k, v in secrets.items() if k != "existingSecret" and v} == {}, path


def test_without_secrets_the_chart_refuses_to_render() -> None:
    with helm_python.Chart.load(CHART) as chart, pytest.raises(helm_python.HelmError, match="databaseUrl"):
        chart.render({}, name="demo", namespace="vivify", is_install=True)


def test_an_existing_secret_is_read_and_none_is_made() -> None:
    objects = render({"secrets": {"existingSecret": "vivify-prod"}})
    assert [o for o in objects if o["kind"] == "Secret"] == []
    web = named(objects, "Deployment", "-web")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "vivify-prod"}} in web["envFrom"]
    auth = named(objects, "TriggerAuthentication", "-keda")
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {"vivify-prod"}


def test_the_made_secret_gives_keda_what_its_scalers_read() -> None:
    secret = named(render(), "Secret", "-secrets")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["KEDA_REDIS_ADDRESS"] == "redis.internal:6379"
    assert data["KEDA_REDIS_PASSWORD"] == "pw-redis"
    assert data["KEDA_POSTGRES_CONNECTION"] == "postgresql://vivify:pw-db@db.internal:5432/vivify"
    assert len(data["VIVIFY_SECRET_KEY"]) >= 32 and len(data["VIVIFY_METRICS_TOKEN"]) >= 32
    assert "VIVIFY_S3_ACCESS_KEY_ID" not in data  # boto3's own chain (a workload identity) then applies
    auth = named(render(), "TriggerAuthentication", "-keda")
    assert {ref["key"] for ref in auth["spec"]["secretTargetRef"]} <= set(data)
