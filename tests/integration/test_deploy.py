"""Every deployment artefact checked with the real tool: promtool, docker-compose, kubectl, kubernetes-validate,
the KEDA model and the Grafana Dashboard type. A check whose tool is missing is skipped, saying what to install."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragsync.app import options
from ragsync.app.application import App
from ragsync.settings import Settings

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
        "SyncFailed",
        "NoRecentSuccess",
        "DeadLettersGrowing",
        "SchedulerDown",
        "RunCompletionBlocked",
        "BatchesFailing",
        "LagUnknown",
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
    assert ("TriggerAuthentication" in kinds) == ("ScaledObject" in kinds)
    for document in documents:
        if not document["apiVersion"].startswith("keda.sh/"):  # KEDA's kinds: checked against its model below
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
    output = _run("node", "check-keda.mjs", stdin=rendered, cwd=checks)
    assert "ScaledObject ragsync-embedder: valid" in output
    assert "TriggerAuthentication ragsync-kafka: valid" in output


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


# --- Kubernetes that runs as written ---

IMAGE_UID = 10001  # the Dockerfile's USER
KAFKA_KEYS = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC_PREFIX", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM")
# KEDA's Kafka scaler's words for ragsync's KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_MECHANISM.
KEDA_TLS = {"PLAINTEXT": "disable", "SASL_PLAINTEXT": "disable", "SSL": "enable", "SASL_SSL": "enable"}
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


@functools.cache
def _rendered(folder: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(_run(_tool("kubectl", "kubectl"), "kustomize", str(folder))) if d]


def _one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [document] = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return document


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)\s*$", dockerfile, flags=re.MULTILINE)
    assert users == [f"{IMAGE_UID}:{IMAGE_UID}"], users  # numeric: Kubernetes checks runAsNonRoot against it
    assert f"--uid {IMAGE_UID}" in dockerfile  # a passwd entry: torch's cache folder looks the user's name up
    assert "DATA_DIR=/app/data" in dockerfile and f"-o {IMAGE_UID}" in dockerfile


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_deployments_leave_the_count_to_their_autoscaler(overlay: str) -> None:
    documents = _rendered(ROOT / "k8s" / overlay)
    scalers = [d for d in documents if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    assert scalers
    for scaler in scalers:
        target = _one(documents, "Deployment", scaler["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], f"{target['metadata']['name']} sets replicas under {scaler['kind']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root_on_a_read_only_root_with_its_data_writable(overlay: str) -> None:
    documents = _rendered(ROOT / "k8s" / overlay)
    config = _one(documents, "ConfigMap", "ragsync")["data"]
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        pod_context = pod["securityContext"]
        assert pod_context["runAsNonRoot"] is True, name
        assert pod_context.get("runAsUser", IMAGE_UID) == IMAGE_UID, name
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        writable = {
            volume["name"]
            for volume in pod.get("volumes", [])
            if "emptyDir" in volume or "persistentVolumeClaim" in volume
        }
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context.get("runAsNonRoot", pod_context["runAsNonRoot"]) is True, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert "privileged" not in context, where
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", []) if m["name"] in writable}
            needed = ["/tmp"]
            if any(source.get("configMapRef", {}).get("name") == "ragsync" for source in container.get("envFrom", [])):
                needed.append(config["DATA_DIR"])
                if "QDRANT_URL" not in config:
                    needed.append(config.get("QDRANT_PATH", f"{config['DATA_DIR']}/qdrant"))
            for path in needed:
                assert any(
                    (path == mount or path.startswith(mount.rstrip("/") + "/")) and not m.get("readOnly", False)
                    for mount, m in mounts.items()
                ), f"{where}: nothing writable is mounted at {path}"
            assert "limits" in container["resources"] and "memory" in container["resources"]["limits"], where


def _kafka_wiring_agrees(documents: list[dict[str, Any]]) -> dict[str, str]:
    """The ScaledObject's trigger against the ragsync ConfigMap; returns the trigger's metadata."""
    config = _one(documents, "ConfigMap", "ragsync")["data"]
    assert set(KAFKA_KEYS) <= set(config)
    settings = Settings(_env_file=None, kafka_topic_prefix=config["KAFKA_TOPIC_PREFIX"])
    app = App.__new__(App)  # the group's name alone: no metrics, no broker
    app.settings = settings
    [trigger] = _one(documents, "ScaledObject", "ragsync-embedder")["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    metadata: dict[str, str] = trigger["metadata"]
    assert metadata["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert metadata["topic"] == options.topics(settings).items
    assert metadata["consumerGroup"] == app.embedder_group
    protocol, mechanism = config["KAFKA_SECURITY_PROTOCOL"], config["KAFKA_SASL_MECHANISM"]
    assert metadata["tls"] == config["KEDA_KAFKA_TLS"] == KEDA_TLS[protocol]
    assert metadata["sasl"] == config["KEDA_KAFKA_SASL"] == (KEDA_SASL[mechanism] if "SASL" in protocol else "none")
    # The login and certificates: the components' own Secret, and the ragsync-tls Secret they mount.
    auth = _one(documents, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": ("ragsync-secrets", "KAFKA_SASL_USERNAME"),
        "password": ("ragsync-secrets", "KAFKA_SASL_PASSWORD"),
        "ca": ("ragsync-tls", "ca.pem"),
        "cert": ("ragsync-tls", "client.pem"),
        "key": ("ragsync-tls", "client.key"),
    }
    secret = _one(documents, "Secret", "ragsync-secrets")
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= set(secret["stringData"])
    embedder = _one(documents, "Deployment", "ragsync-embedder")["spec"]["template"]["spec"]
    assert {"secretName": "ragsync-tls", "optional": True} in [v.get("secret") for v in embedder["volumes"]]
    return metadata


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_keda_reads_the_lag_of_the_topic_group_and_brokers_the_components_use(overlay: str) -> None:
    metadata = _kafka_wiring_agrees(_rendered(ROOT / "k8s" / overlay))
    assert (metadata["topic"], metadata["consumerGroup"]) == ("ragsync.items", "ragsync.embedder")


def test_an_overlay_that_changes_kafka_settings_carries_them_into_the_scaled_object(tmp_path: Path) -> None:
    """The way the README gives: a component of the overlay changes the ConfigMap, listed before kafka-wiring."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "secured"
    (overlay / "kafka").mkdir(parents=True)
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": "b-1.example:9096,b-2.example:9096",
        "KAFKA_TOPIC_PREFIX": "acme.prod.",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KEDA_KAFKA_SASL": "scram_sha512",
        "KEDA_KAFKA_TLS": "enable",
    }
    component = {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "patches": [
            {
                "target": {"kind": "ConfigMap", "name": "ragsync"},
                "patch": yaml.safe_dump(
                    [{"op": "replace", "path": f"/data/{k}", "value": v} for k, v in values.items()]
                ),
            }
        ],
    }
    (overlay / "kafka" / "kustomization.yaml").write_text(yaml.safe_dump(component))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../production"],
        "components": ["kafka", "../../components/kafka-wiring"],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    metadata = _kafka_wiring_agrees(_rendered(overlay))
    assert metadata["bootstrapServers"] == "b-1.example:9096,b-2.example:9096"
    assert (metadata["topic"], metadata["consumerGroup"]) == ("acme.prod.items", "acme.prod.embedder")
    assert (metadata["sasl"], metadata["tls"]) == ("scram_sha512", "enable")


# --- compose that starts in order ---

RAGSYNC_IMAGE = "ragsync:0.1.0"
OPS_PORTS = {"scheduler": 9100, "fetcher": 9101, "embedder": 9102}
# Which of Kafka, Qdrant and the Coordinator each component needs healthy before it starts (the demo Coordinator
# needs none of them; only the embedder opens the store; only the fetcher calls the Coordinator).
NEEDS = {
    "coordinator": set(),
    "scheduler": {"kafka"},
    "fetcher": {"kafka", "coordinator"},
    "embedder": {"kafka", "qdrant"},
}
# Environment names compose may set for ragsync's services that are not ragsync settings, each with its reason.
NOT_SETTINGS: dict[str, str] = {}


def _compose_services() -> dict[str, dict[str, Any]]:
    compose = _tool("docker-compose", "docker-compose")
    rendered = yaml.safe_load(_run(compose, "-f", "docker-compose.yml", "config", env={"QDRANT_API_KEY": "k" * 32}))
    services: dict[str, dict[str, Any]] = rendered["services"]
    return services


def test_compose_starts_each_component_once_what_it_needs_is_healthy() -> None:
    services = _compose_services()
    ragsync = {name for name, service in services.items() if service.get("image") == RAGSYNC_IMAGE}
    assert ragsync == set(NEEDS)
    for name in ("kafka", "qdrant", *sorted(ragsync)):
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable", False), f"{name} has no healthcheck"
    for name in ragsync:
        depends = services[name].get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        assert {other: d["condition"] for other, d in depends.items()} == dict.fromkeys(NEEDS[name], "service_healthy")
    for name, port in OPS_PORTS.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in test and test.startswith("CMD python -c"), test


def test_compose_environment_names_are_ragsync_settings_named_in_the_docs() -> None:
    services = _compose_services()
    fields = {name.upper() for name in Settings.model_fields}
    reference = (ROOT / "docs" / "configuration.md").read_text()
    names = {
        variable
        for service in services.values()
        if service.get("image") == RAGSYNC_IMAGE
        for variable in service.get("environment", {})
    }
    assert names, "no environment rendered"
    unknown = sorted(names - fields - set(NOT_SETTINGS))
    assert not unknown, f"not ragsync settings: {unknown}"
    undocumented = sorted(n for n in names - set(NOT_SETTINGS) if f"`{n}`" not in reference)
    assert not undocumented, f"not in docs/configuration.md: {undocumented}"
    assert not {n for n in names if n.startswith("RAGSYNC_")}
