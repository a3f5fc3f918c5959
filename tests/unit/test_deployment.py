"""The deployment files agree with the code: Procfile processes, the compose file's services,
health checks and start order (checked by `docker compose config` where a client exists), and
the Kubernetes manifests of docker/k8s/ (validated against the Kubernetes schemas with
kubernetes-validate; the KEDA ScaledObject, whose CRD those schemas lack, structurally)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
ENV = {**os.environ, "SECRET_KEY": "x", "FLOWER_BASIC_AUTH": "admin:secret"}


def compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_procfile_runs_every_process_with_shared_metrics():
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    assert set(lines) == {"release", "web", "worker", "beat", "flower"}
    assert lines["release"] == "alembic upgrade head"
    assert "gunicorn" in lines["web"] and "wsgi:app" in lines["web"]
    for name in ("web", "worker", "beat"):
        assert "PROMETHEUS_MULTIPROC_DIR" in lines[name], name
    # Flower reads FLOWER_BASIC_AUTH from its environment: never the password in argv.
    assert "basic-auth" not in lines["flower"]
    assert '"${FLOWER_BASIC_AUTH:?' in lines["flower"]  # refuses to start without it


def test_compose_file_has_every_service_with_health_checks_and_start_order():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "beat", "flower", "opencode"}
    for name in ("postgres", "redis", "web", "worker", "flower", "opencode"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("web", "worker", "beat", "flower"):
        needs = services[name]["depends_on"]
        assert needs["postgres"]["condition"] == needs["redis"]["condition"] == "service_healthy"
        assert services[name]["command"] == [name]
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["beat"]["depends_on"]["web"]["condition"] == "service_healthy"
    env = services["web"]["environment"]
    assert (
        env["PROMETHEUS_MULTIPROC_DIR"]
        and "metrics:" + env["PROMETHEUS_MULTIPROC_DIR"] in (services["worker"]["volumes"])
    )
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "basic-auth" not in entrypoint and '"${FLOWER_BASIC_AUTH:?' in entrypoint
    with_password = {
        name for name, service in services.items()
        if "FLOWER_BASIC_AUTH" in service.get("environment", {})
    }  # fmt: skip
    assert with_password == {"flower"}  # web, worker and beat never hold Flower's password


def test_docker_compose_config_accepts_the_file():
    client = compose_client()
    if client is None:
        pytest.skip("no docker compose client here; the YAML checks above still ran")
    result = subprocess.run([*client, "-f", str(COMPOSE), "config"], env=ENV, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "healthcheck" in result.stdout


def test_web_runs_gevent_workers_in_the_procfile_and_the_image():
    # An open event stream holds no request thread (tests/e2e/test_event_streams.py).
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    for command in (lines["web"], entrypoint):
        assert "--worker-class gevent" in command and "--threads" not in command


# -- many hosts: worker flags, the OpenCode beside each worker, Kubernetes -------------------
K8S = ROOT / "docker" / "k8s"
K8S_VERSIONS = ("1.30.0", "1.33.0")  # native sidecars (initContainers restartPolicy) since 1.29


def k8s_resources() -> dict[tuple[str, str], dict]:
    resources = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                resources[(doc["kind"], doc["metadata"]["name"])] = doc
    return resources


def _containers(resource: dict) -> dict[str, dict]:
    spec = resource["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def test_workers_start_without_gossip_or_mingle_everywhere():
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    stack = (ROOT / "app" / "standalone" / "stack.py").read_text()
    for text in (lines["worker"], entrypoint, stack):
        assert "--without-gossip" in text and "--without-mingle" in text


def test_deploys_stop_workers_with_a_bounded_soft_shutdown():
    import celeryconfig

    assert celeryconfig.worker_soft_shutdown_timeout >= 600  # a task's default timeout
    assert celeryconfig.broker_transport_options["master_name"]  # for sentinel:// brokers
    worker = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]
    assert worker["stop_signal"] == "SIGQUIT"
    grace = worker["stop_grace_period"]
    assert grace.endswith("m") and int(grace[:-1]) * 60 > celeryconfig.worker_soft_shutdown_timeout


def test_compose_runs_opencode_in_the_workers_namespace_sharing_its_workspaces():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    opencode, worker = services["opencode"], services["worker"]
    assert opencode["network_mode"] == "service:worker"
    workspaces = [v for v in worker["volumes"] if v.startswith("workspaces:")]
    assert workspaces and workspaces[0] in opencode["volumes"]
    assert worker["environment"]["WORKER_OPENCODE_URL"] == "http://127.0.0.1:4096"
    assert opencode["build"]["target"] == "opencode"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "AS opencode" in dockerfile and '--port", "4096"' in dockerfile
    # The orchestrator's image stays the default (last) stage.
    assert dockerfile.rstrip().splitlines()[-1].startswith("CMD")


def test_the_kubernetes_manifests_hold_every_process():
    resources = k8s_resources()
    processes = ("web", "worker", "beat", "flower")
    assert {("Deployment", f"orchestrator-{name}") for name in processes} <= set(resources)
    assert {("Service", "orchestrator-web"), ("Job", "orchestrator-migrate"),
            ("ConfigMap", "orchestrator-config"), ("Secret", "orchestrator-secrets"),
            ("ScaledObject", "orchestrator-worker")} <= set(resources)  # fmt: skip
    beat = resources[("Deployment", "orchestrator-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    migrate = resources[("Job", "orchestrator-migrate")]["spec"]["template"]["spec"]
    assert migrate["containers"][0]["args"] == ["release"]
    for name in ("web", "worker", "beat", "flower"):
        containers = _containers(resources[("Deployment", f"orchestrator-{name}")])
        assert containers[name]["args"] == [name]


def test_the_worker_pod_has_its_opencode_sidecar_on_a_shared_workspace():
    worker = k8s_resources()[("Deployment", "orchestrator-worker")]
    spec, containers = worker["spec"]["template"]["spec"], _containers(worker)
    sidecar = containers["opencode"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: outlives the worker
    env = {item["name"]: item.get("value") for item in containers["worker"]["env"]}
    assert env["WORKER_OPENCODE_URL"] == "http://127.0.0.1:4096"
    assert env["REMAP_SIGTERM"] == "SIGQUIT"
    mounts = {c: {m["name"]: m["mountPath"] for m in containers[c]["volumeMounts"]}
              for c in ("worker", "opencode")}  # fmt: skip
    assert mounts["worker"]["workspaces"] == mounts["opencode"]["workspaces"]
    config = k8s_resources()[("ConfigMap", "orchestrator-config")]["data"]
    assert mounts["worker"]["workspaces"] == config["WORKSPACE_ROOT"]
    assert spec["terminationGracePeriodSeconds"] > int(config["WORKER_SOFT_SHUTDOWN_SECONDS"])
    assert {"emptyDir"} <= set(next(v for v in spec["volumes"] if v["name"] == "workspaces"))


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_kubernetes_manifest_validates_against_the_schemas(version):
    import kubernetes_validate

    checked = 0
    for resource in k8s_resources().values():
        if resource["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked structurally below
        kubernetes_validate.validate(resource, version, strict=True)
        checked += 1
    assert checked >= 9


def test_the_keda_scaler_watches_every_priority_list_of_the_agents_queue():
    from app.engine.broker import PRIORITY_STEPS
    from models.enums import SessionPriority

    resources = k8s_resources()
    scaled = resources[("ScaledObject", "orchestrator-worker")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert ("Deployment", spec["scaleTargetRef"]["name"]) in resources
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    lists = {trigger["metadata"]["listName"]: trigger for trigger in spec["triggers"]}
    # Celery's Redis transport: priority p's messages wait in `agents` (0) or `agents:<p>`.
    wanted = {"agents" if p.value == 0 else f"agents:{p.value}" for p in SessionPriority}
    assert set(lists) == wanted and max(p.value for p in SessionPriority) in PRIORITY_STEPS
    secret = resources[("Secret", "orchestrator-secrets")]["stringData"]
    names = set()
    for trigger in spec["triggers"]:
        assert trigger["type"] == "redis" and int(trigger["metadata"]["listLength"]) > 0
        assert trigger["metadata"]["addressFromEnv"] in secret
        auth = trigger["authenticationRef"]["name"]
        assert ("TriggerAuthentication", auth) in resources
        names.add(trigger["name"])
    formula = spec["advanced"]["scalingModifiers"]["formula"]
    assert set(formula.replace("+", " ").split()) == names  # the backlog is their sum
    refs = resources[("TriggerAuthentication", "orchestrator-redis")]["spec"]["secretTargetRef"]
    assert all(("Secret", ref["name"]) in resources for ref in refs)
