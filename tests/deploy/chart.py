"""Render deploy/helm/vivify with the real Helm (v4's own library, through helm-python-sdk) and validate
what it renders: Kubernetes objects against the schemas kubernetes-validate bundles, KEDA's against the
CRDs vendored in schemas/ (see schemas/README.md). Nothing here needs a cluster or the network."""

from __future__ import annotations

import base64
import functools
import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import helm_python
import jsonschema
import kubernetes_validate
import yaml

from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "vivify"
EXAMPLES = CHART / "examples"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
# The chart's floor (Chart.yaml kubeVersion) and the newest minor kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
RELEASE = "demo"
NAMESPACE = "vivify"

# What an operator passes at install (`--set-string`), never kept in a values file.
INSTALL_SECRETS: dict[str, Any] = {
    "secrets": {
        "databaseUrl": "postgresql+psycopg://vivify:pw-db@db.internal:5432/vivify",
        "brokerUrl": "redis://:pw-redis@redis.internal:6379/0",
    }
}

Obj = dict[str, Any]


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Values layered as Helm's `-f a -f b --set ...` does: later maps win key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def example(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return values


@functools.lru_cache(maxsize=32)
def _render(values_json: str, upgrade: bool) -> tuple[Obj, ...]:
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(
            json.loads(values_json),
            name=RELEASE,
            namespace=NAMESPACE,
            is_install=not upgrade,
            is_upgrade=upgrade,
        )
    objects: list[Obj] = []
    for source, text in sorted(manifests.items()):
        if not source.endswith(".yaml"):
            continue
        for doc in yaml.load_all(text, Loader=yaml.CSafeLoader):  # libyaml: ten times the pure-Python speed
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                objects.append(doc)
    return tuple(objects)


def render(values: dict[str, Any] | None = None, *, upgrade: bool = False) -> list[Obj]:
    """Every object the chart renders for these values (secrets of INSTALL_SECRETS added)."""
    return list(_render(json.dumps(merged(INSTALL_SECRETS, values or {}), sort_keys=True), upgrade))


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Obj], kind: str, suffix: str) -> Obj:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    return found


def pod_specs(objects: list[Obj]) -> dict[str, Obj]:
    """The pod spec of every workload, by `Kind/name`."""
    specs = {}
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs[f"{o['kind']}/{o['metadata']['name']}"] = o["spec"]["template"]["spec"]
    return specs


def hook(o: Obj) -> tuple[set[str], int] | None:
    """The hook events and weight of an object, or None for a release resource."""
    annotations = o["metadata"]["annotations"]
    if "helm.sh/hook" not in annotations:
        return None
    return set(annotations["helm.sh/hook"].split(",")), int(annotations.get("helm.sh/hook-weight", "0"))


@functools.lru_cache(maxsize=4)
def crd_schema(kind: str) -> Obj:
    """The served version's openAPIV3Schema of a vendored KEDA CRD, made strict: an object that lists
    its properties admits no other (as `kubectl apply --validate=strict`), unless the CRD keeps unknown
    fields there."""
    for path in SCHEMAS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
            schema: Obj = version["schema"]["openAPIV3Schema"]
            return _strict(schema)
    raise LookupError(f"no vendored CRD for {kind}")


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        node = [_strict(v) for v in node]
    return node


def validate(o: Obj) -> None:
    """Raise unless `o` is valid: KEDA objects against their CRD, everything else against Kubernetes'."""
    if o["apiVersion"].startswith("keda.sh/"):
        jsonschema.Draft7Validator(crd_schema(o["kind"])).validate(o)
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(o, version, strict=True)


def pod_env(objects: list[Obj], container: Obj) -> dict[str, str]:
    """The environment a container of the chart starts with: its ConfigMap and Secret, then its own env."""
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            (config,) = [
                o
                for o in objects
                if o["kind"] == "ConfigMap" and o["metadata"]["name"] == ref["configMapRef"]["name"]
            ]
            env.update(config["data"])
        else:
            (secret,) = [
                o
                for o in objects
                if o["kind"] == "Secret" and o["metadata"]["name"] == ref["secretRef"]["name"]
            ]
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings a process with exactly this environment reads (nothing of the test runner's VIVIFY_*)."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFY_")}
    with mock.patch.dict(os.environ, {**kept, **env}, clear=True):
        return Settings(_env_file=None)
