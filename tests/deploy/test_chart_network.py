"""The NetworkPolicies follow the README's per-pod egress table; only the web tier takes ingress."""

from __future__ import annotations

from typing import Any

from tests.deploy.chart import example, of_kind, render

DNS = 53


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def allowed(objects: list[dict[str, Any]], labels: dict[str, str]) -> tuple[set[int], set[int], bool]:
    """(egress ports, ingress ports, internet egress) the policies selecting a pod with these labels allow."""
    egress: set[int] = set()
    ingress: set[int] = set()
    internet = False
    for policy in of_kind(objects, "NetworkPolicy"):
        if not selects(policy, labels):
            continue
        for rule in policy["spec"].get("egress", []):
            egress |= {p["port"] for p in rule["ports"]}
            internet |= any(peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for peer in rule.get("to", []))
        for rule in policy["spec"].get("ingress", []):
            ingress |= {p["port"] for p in rule["ports"]}
    return egress - {DNS}, ingress, internet


def pod_labels(objects: list[dict[str, Any]], suffix: str) -> dict[str, str]:
    (d,) = [
        o
        for o in of_kind(objects, "Deployment") + of_kind(objects, "Job")
        if o["metadata"]["name"].endswith(suffix)
    ]
    labels: dict[str, str] = d["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_pod_is_denied_by_default() -> None:
    objects = render()
    (deny,) = [
        p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("-default-deny")
    ]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    for o in of_kind(objects, "Deployment") + of_kind(objects, "Job"):
        assert selects(deny, o["spec"]["template"]["metadata"]["labels"]), o["metadata"]["name"]


def test_the_egress_table() -> None:
    objects = render()
    backends = {5432, 6379, 443, 9000}  # database, Redis, storage (S3 on 443, MinIO on 9000)
    web = allowed(objects, pod_labels(objects, "-web"))
    assert web == (backends, {8000}, False)
    portrait = allowed(objects, pod_labels(objects, "-worker-portrait"))
    assert portrait == (backends, {9100}, False)
    gpu = pod_labels(objects, "-worker-diffusion")
    hub = [p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("-model-hub")]
    assert [selects(p, gpu) for p in hub] == [True] and not selects(hub[0], portrait_labels(objects))
    assert allowed(objects, gpu)[:2] == (backends, {9100})
    events = allowed(objects, pod_labels(objects, "-events"))
    assert events[1] == set() and events[2] is True and {80, 443} <= events[0]
    (internet,) = [
        peer["ipBlock"]
        for p in of_kind(objects, "NetworkPolicy")
        for rule in p["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]
    assert {"10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16", "172.16.0.0/12"} <= set(internet["except"])
    beat = allowed(objects, pod_labels(objects, "-beat"))
    assert beat == (backends, set(), False)
    migrate = allowed(objects, pod_labels(objects, "-migrate"))
    assert migrate == ({5432}, set(), False)


def portrait_labels(objects: list[dict[str, Any]]) -> dict[str, str]:
    return pod_labels(objects, "-worker-portrait")


def test_only_the_web_tier_takes_ingress_and_metrics_only_from_inside() -> None:
    objects = render()
    takers = {
        p["metadata"]["name"]: {
            port["port"] for rule in p["spec"].get("ingress", []) for port in rule["ports"]
        }
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"].get("ingress")
    }
    assert takers == {"demo-vivify-web": {8000}, "demo-vivify-workers": {9100}}
    (workers,) = [
        p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "demo-vivify-workers"
    ]
    (rule,) = workers["spec"]["ingress"]
    assert rule["from"] and all("namespaceSelector" in peer for peer in rule["from"])  # never "anyone"
    # The web tier's /metrics answers only the metrics token, which sits in the Secret, not the ConfigMap.
    config = [o for o in of_kind(objects, "ConfigMap")][0]["data"]
    secret = [o for o in of_kind(objects, "Secret")][0]["data"]
    assert "VIVIFY_METRICS_TOKEN" in secret and "VIVIFY_METRICS_TOKEN" not in config


def test_a_narrowed_web_tier_still_lets_the_monitoring_namespace_scrape_it() -> None:
    objects = render(example("multi-gpu.yaml"))
    (web,) = [p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "demo-vivify-web"]
    sources = [peer for rule in web["spec"]["ingress"] for peer in rule["from"]]
    names = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in sources}
    assert names == {"ingress-nginx", "monitoring"}


def test_the_ingress_never_forwards_metrics() -> None:
    objects = render(example("multi-gpu.yaml"))
    (ingress,) = of_kind(objects, "Ingress")
    paths = {p["path"]: p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths["/metrics"]["pathType"] == "Exact"  # wins over the Prefix "/" (the Ingress spec)
    (hole,) = [
        s
        for s in of_kind(objects, "Service")
        if s["metadata"]["name"] == paths["/metrics"]["backend"]["service"]["name"]
    ]
    pod_labels = [
        o["spec"]["template"]["metadata"]["labels"]
        for o in of_kind(objects, "Deployment") + of_kind(objects, "Job")
    ]
    assert not any(
        all(labels.get(k) == v for k, v in hole["spec"]["selector"].items()) for labels in pod_labels
    )
    assert paths["/"]["backend"]["service"]["name"].endswith("-web")
