"""The deployment files hang together: the example configuration and the Kubernetes manifests
parse, validate as Berth settings, and refer to each other (Secret keys, mounts, probes)
consistently. No server is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.routes import ROUTES
from registry.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
EXAMPLE = ROOT / "config" / "berth-s3-postgres.yaml"


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def flatten(mapping: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in mapping.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= flatten(value, f"{prefix}{key}.")
    return keys


def test_example_configuration_is_complete_and_valid() -> None:
    text = EXAMPLE.read_text()
    data = yaml.safe_load(text)
    defaults = yaml.safe_load((ROOT / "config" / "berth.yaml").read_text())
    assert flatten(data) == flatten(defaults), "every key of config/berth.yaml, no other"
    settings = load_settings(EXAMPLE, environ={})
    assert settings.storage.driver == "s3"
    assert settings.database.url.startswith("postgresql")
    assert not settings.database.migrate_on_start
    assert settings.server.workers > 1
    assert settings.server.external_url
    assert settings.auth.signing_key
    assert "CHANGE-ME" in text


def test_manifests_parse_and_hold_what_a_deployment_needs() -> None:
    kinds = sorted(d["kind"] for d in documents())
    assert kinds == sorted(
        ["ConfigMap", "Secret", "Job", "Deployment", "Service", "PodDisruptionBudget"]
    )
    for doc in documents():
        assert doc["apiVersion"] and doc["metadata"]["name"]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _config_settings(tmp_path: Path, environment: dict[str, str]) -> Any:
    """The settings a pod ends up with: the ConfigMap's file under the Secret's env vars."""
    config = tmp_path / "berth.yaml"
    config.write_text(one("ConfigMap", "berth-config")["data"]["berth.yaml"])
    return load_settings(config, environ=environment)


def test_deployment_runs_replicas_with_probes_keys_and_secrets(tmp_path: Path) -> None:
    deployment = one("Deployment", "berth")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = _container(deployment)
    assert spec["replicas"] >= 3
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    # Probes point at the health routes that exist, on the port the container exposes.
    paths = {getattr(route, "path", None) for route in ROUTES}
    ports = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in paths and get["port"] in ports

    # Every secret env var names a key the Secret has.
    secret = one("Secret", "berth-secrets")
    secret_keys = set(secret["stringData"])
    environment = {}
    for var in container["env"]:
        if "value" in var:
            environment[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "berth-secrets" and ref["key"] in secret_keys, var
        environment[var["name"]] = secret["stringData"][ref["key"]]

    # The configuration the pods read, with those variables, is a replica's configuration.
    settings = _config_settings(tmp_path, environment)
    assert settings.storage.driver == "s3"
    assert settings.database.url == secret["stringData"]["database-url"]
    assert settings.storage.s3.secret_access_key == secret["stringData"]["s3-secret-access-key"]
    assert not settings.database.migrate_on_start

    # The config file, the signing key and the pepper beside it are mounted where it says.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_arg = container["command"][container["command"].index("--config") + 1]
    config_dir, config_file = config_arg.rsplit("/", 1)
    assert volumes[mounts[config_dir]]["configMap"]["name"] == "berth-config"
    assert config_file == "berth.yaml"
    key_dir, key_file = settings.auth.signing_key.rsplit("/", 1)
    keys = volumes[mounts[key_dir]]["secret"]
    assert keys["secretName"] == "berth-secrets"
    assert {item["path"] for item in keys["items"]} == {key_file, "robot-pepper"}
    assert {item["key"] for item in keys["items"]} <= secret_keys
    assert "emptyDir" in volumes[mounts[settings.data_dir]]


def test_service_and_budget_select_the_pods() -> None:
    labels = one("Deployment", "berth")["spec"]["template"]["metadata"]["labels"]
    service = one("Service", "berth")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budget = one("PodDisruptionBudget", "berth")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] < one("Deployment", "berth")["spec"]["replicas"]


def test_migration_job_uses_the_same_configuration() -> None:
    job = one("Job", "berth-migrate")
    container = _container(job)
    script = " ".join(container["args"])
    assert "berth migrate --config /etc/berth/config/berth.yaml" in script
    assert "berth user create admin --admin --password-stdin" in script
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/berth/config"]]["configMap"]["name"] == "berth-config"
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    images = {container["image"], _container(one("Deployment", "berth"))["image"]}
    assert len(images) == 1, "the Job must run the same image as the replicas"


@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml")))
def test_values_to_change_are_marked(path: str) -> None:
    assert "CHANGE-ME" in (K8S / path).read_text()
