"""The chart renders with the real Helm, and every object it renders is valid, with the default values,
the multi-GPU example and the in-cluster trial."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.deploy.chart import CHART, INSTALL_SECRETS, example, merged, render, validate

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "multi-gpu example": example("multi-gpu.yaml"),
    "trial": {"secrets": {"databaseUrl": "", "brokerUrl": ""}, "trial": {"enabled": True}},
    "without KEDA": {"keda": {"enabled": False}, "networkPolicy": {"enabled": False}},
}


@pytest.mark.parametrize("case", CASES)
def test_every_object_validates(case: str) -> None:
    objects = render(CASES[case])
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Job", "Secret", "ConfigMap", "HorizontalPodAutoscaler"} <= kinds
    for o in objects:
        validate(o)


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_finds_nothing(case: str) -> None:
    values = merged(INSTALL_SECRETS, CASES[case])
    report = helm_python.lint(CHART, values, strict=True, kube_version="v1.27.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_validator_rejects_what_a_cluster_would() -> None:
    """The checks have teeth: a misspelt field and a wrong type are each refused."""
    import jsonschema

    objects = render()
    web = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-web"))
    broken = {**web, "spec": {**web["spec"], "replica": 2}}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    typo = {**scaled, "spec": {**scaled["spec"], "cooldownPeriod": "300"}}
    with pytest.raises(jsonschema.ValidationError):
        validate(typo)
    unknown = {**scaled, "spec": {**scaled["spec"], "coolDownPeriod": 300}}
    with pytest.raises(jsonschema.ValidationError):
        validate(unknown)
