"""Every deployment artefact checked with the real tool: promtool, docker-compose, kubectl, kubernetes-validate,
the KEDA model and the Grafana Dashboard type. A check whose tool is missing is skipped, saying what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "deploy" / "checks"
OVERLAYS = ["base", "overlays/production", "overlays/hpa"]


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs `{name}` (Debian package {package}; .ci/run installs it)")
    return path


def _run(*command: str, stdin: str | None = None, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, **env} if env is not None else None
    result = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True, check=False, env=full_env)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    promtool = _tool("promtool", "prometheus")
    folder = ROOT / "deploy" / "prometheus"
    _run(promtool, "check", "config", "prometheus.yml", cwd=folder)
    output = _run(promtool, "test", "rules", "alerts.test.yml", cwd=folder)
    assert "SUCCESS" in output
    rules = yaml.safe_load((folder / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "SyncStalled",
        "ConsumerLagHigh",
        "CoordinatorErrors",
        "NoRecentSuccess",
        "DeadLettersGrowing",
        "SchedulerDown",
        "RunCompletionBlocked",
        "StageCrashing",
        "StoreDiskLow",
        "RelatedEdgesFailing",
        "ModelProcessExiting",
        "DeletionHeld",
    }


def test_docker_compose_file_is_valid_and_the_embedder_scales() -> None:
    compose = _tool("docker-compose", "docker-compose")
    _run(compose, "-f", "docker-compose.yml", "config", "-q", env={"QDRANT_API_KEY": "k" * 32})
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"kafka", "qdrant", "prometheus", "grafana", "coordinator", "scheduler", "fetcher", "embedder"} <= set(
        services
    )
    assert "ports" not in services["embedder"] and "container_name" not in services["embedder"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_renders_and_core_kinds_validate_strictly(overlay: str) -> None:
    import kubernetes_validate

    kubectl = _tool("kubectl", "kubectl")
    documents = [d for d in yaml.safe_load_all(_run(kubectl, "kustomize", f"k8s/{overlay}")) if d]
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "ConfigMap", "Secret", "PodDisruptionBudget"} <= kinds
    assert ("ScaledObject" in kinds) != ("HorizontalPodAutoscaler" in kinds)
    for document in documents:
        if document["kind"] != "ScaledObject":
            kubernetes_validate.validate(document, "1.31", strict=True)
    for deployment in (d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] != "coordinator"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"livenessProbe", "readinessProbe", "resources"} <= set(container), deployment["metadata"]["name"]


def _node_checks() -> Path:
    _tool("node", "nodejs")
    if not (CHECKS / "node_modules").is_dir():
        pytest.skip("needs deploy/checks/node_modules (`make tools` runs npm ci there)")
    return CHECKS


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_scaled_object_passes_the_keda_model(overlay: str) -> None:
    checks = _node_checks()
    rendered = _run(_tool("kubectl", "kubectl"), "kustomize", f"k8s/{overlay}")
    assert "valid" in _run("node", "check-keda.mjs", stdin=rendered, cwd=checks)


def test_dashboard_type_checks_against_grafana_schema() -> None:
    checks = _node_checks()
    output = _run("node", "check-dashboard.mjs", str(ROOT / "deploy/grafana/dashboards/ragsync.json"), cwd=checks)
    assert "a valid Grafana Dashboard" in output


def test_compose_publishes_on_loopback_and_gives_qdrant_an_api_key() -> None:
    compose = _tool("docker-compose", "docker-compose")
    key = "k" * 32
    rendered = yaml.safe_load(_run(compose, "-f", "docker-compose.yml", "config", env={"QDRANT_API_KEY": key}))
    published = {
        name: [_host_ip(port) for port in service.get("ports", [])] for name, service in rendered["services"].items()
    }
    assert {ip for ips in published.values() for ip in ips} == {"127.0.0.1"}, published
    services = rendered["services"]
    assert services["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"] == key
    assert services["embedder"]["environment"]["QDRANT_API_KEY"] == key
    assert {"ADMIN_TOKEN", "OPS_TOKEN"} <= set(services["scheduler"]["environment"])
    without = subprocess.run(
        [compose, "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "QDRANT_API_KEY"},
    )
    assert without.returncode != 0 and "QDRANT_API_KEY" in without.stderr


def _host_ip(port: str | dict[str, object]) -> str:
    """The address a published port listens on, as docker-compose renders it (a string or a mapping)."""
    if isinstance(port, dict):
        return str(port.get("host_ip", ""))
    return port.rsplit(":", 2)[0] if port.count(":") == 2 else ""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_open_ops_ports_to_monitoring_and_qdrant_to_ragsync_alone(overlay: str) -> None:
    import kubernetes_validate

    rendered = _run(_tool("kubectl", "kubectl"), "kustomize", f"k8s/{overlay}")
    policies = {d["metadata"]["name"]: d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "NetworkPolicy"}
    for policy in policies.values():
        kubernetes_validate.validate(policy, "1.31", strict=True)
    ops = policies["ragsync-ops-from-monitoring"]["spec"]
    [selector] = ops["podSelector"]["matchExpressions"]
    assert sorted(selector["values"]) == ["embedder", "fetcher", "scheduler"]
    [rule] = ops["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": "ops"}]
    [rule] = policies["qdrant-from-ragsync"]["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "ragsync"}}}]
    assert all(p["policyTypes"] == ["Ingress"] for p in (d["spec"] for d in policies.values()))
