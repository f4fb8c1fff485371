"""The deployment files agree with the code: compose, Prometheus, Grafana dashboard, healthcheck,
and the Kubernetes manifests of deploy/kubernetes/ (valid against the Kubernetes API schema of
KUBERNETES_VERSION; probes, ports, env names and metric names those of the code).

Fast and Docker-free (the stack itself runs in the slow tests/test_compose_stack.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import SemcomConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
SEMCOM_SERVICES = {"transmitter": 50051, "channel_emulator": 50052, "receiver": 50053}
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.32.0"  # the API schema the manifests are validated against (kubernetes-validate)
# Kubernetes Deployment name -> (module run by the container, gRPC service in the proto, config port fields)
K8S_SERVICES = {"transmitter": ("transmitter", "Transmitter", "transmitter_port", "transmitter_metrics_port"),
                "channel-emulator": ("channel_emulator", "ChannelEmulator", "channel_port", "channel_metrics_port"),
                "receiver": ("receiver", "Receiver", "receiver_port", "receiver_metrics_port")}


@pytest.fixture(scope="module")
def compose():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_health_command_answers_without_torch():
    code = ("import sys; from semcom_cli.entry import main; "
            "rc = main(['health', '--target', '127.0.0.1:9', '--timeout', '0.5']); "
            "assert 'torch' not in sys.modules, 'semcom health imported torch'; print(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1" and "NOT SERVING" in proc.stderr


def test_health_command_sees_a_serving_chain(chain):
    from semcom_cli.entry import main

    assert main(["health", "--target", chain.target]) == 0


def test_compose_services_health_order_and_env(compose):
    services = compose["services"]
    assert set(services) >= {*SEMCOM_SERVICES, "prometheus", "grafana"}
    fields = {f"SEMCOM_{f.name.upper()}" for f in dataclasses.fields(SemcomConfig)}
    for name, port in SEMCOM_SERVICES.items():
        svc = services[name]
        assert svc["command"] == ["python", "-m", name]
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", "semcom", "health"] and test[-1] == f"127.0.0.1:{port}"
        unknown = {k for k in svc["environment"] if k.startswith("SEMCOM_")} - fields - {"SEMCOM_SERVICE"}
        assert not unknown, f"{name}: not config fields: {unknown}"
    # Health order: receiver <- channel emulator <- transmitter.
    assert services["channel_emulator"]["depends_on"]["receiver"]["condition"] == "service_healthy"
    assert services["transmitter"]["depends_on"]["channel_emulator"]["condition"] == "service_healthy"
    # The receiver scales: no fixed host ports; the emulator resolves all replicas.
    assert "ports" not in services["receiver"]
    assert services["channel_emulator"]["environment"]["SEMCOM_RECEIVER_ADDRESS"] == "dns:///receiver:50053"


def test_prometheus_scrapes_each_service_by_dns(compose):
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    env = {name: compose["services"][name]["environment"] for name in SEMCOM_SERVICES}
    metrics_port = {"transmitter": env["transmitter"]["SEMCOM_TRANSMITTER_METRICS_PORT"],
                    "channel_emulator": env["channel_emulator"]["SEMCOM_CHANNEL_METRICS_PORT"],
                    "receiver": env["receiver"]["SEMCOM_RECEIVER_METRICS_PORT"]}
    for name in SEMCOM_SERVICES:
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd["type"] == "A" and str(sd["port"]) == str(metrics_port[name])


def unknown_metrics(expr: str) -> set[str]:
    """The semcom_* series a PromQL expression names that the services do not export."""
    from prometheus_client import REGISTRY

    import shared.serving.telemetry  # noqa: F401  (registers the metrics)

    known = {m.name for m in REGISTRY.collect()}
    return {name for name in re.findall(r"\b(semcom_[a-z_]+)", expr)
            if re.sub(r"_(bucket|sum|count|total)$", "", name) not in known}


def test_dashboard_queries_name_real_metrics():
    dash = json.loads((ROOT / "deploy/grafana/dashboards/semcom.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    for expr in exprs:
        assert not unknown_metrics(expr), f"dashboard query uses unknown metrics: {expr}"
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            assert t["datasource"]["uid"] == "semcom-prometheus"
    yaml = pytest.importorskip("yaml")
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "semcom-prometheus"


def test_servers_close_old_connections_and_clients_reconnect():
    """SEMCOM_GRPC_MAX_CONNECTION_AGE_S: calls keep working across the server's GOAWAY."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from shared.serving.rpc import open_channel, start_server

    async def scenario():
        config = load_config(bind_host="127.0.0.1", grpc_max_connection_age_s=0.3)
        server, port = await start_server(config, 0, "Receiver", lambda s: None)
        try:
            async with open_channel(f"dns:///127.0.0.1:{port}", config) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                for _ in range(3):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5, wait_for_ready=True)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                    await asyncio.sleep(0.5)
        finally:
            await server.stop(0)

    asyncio.run(scenario())


def k8s_documents(*paths: Path) -> list[dict]:
    """The API objects of these manifest files (every YAML document)."""
    yaml = pytest.importorskip("yaml")
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_objects(folder: str) -> dict[tuple[str, str], dict]:
    """(kind, name) -> object of a folder's manifests (its kustomization.yaml left out)."""
    files = sorted(p for p in (KUBERNETES / folder).glob("*.yaml") if p.name != "kustomization.yaml")
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in k8s_documents(*files)}


def kustomize(folder: str) -> list[dict]:
    """``kubectl kustomize`` of a folder (skips where kubectl is not installed)."""
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed (kustomize rendering)")
    yaml = pytest.importorskip("yaml")
    text = subprocess.run(["kubectl", "kustomize", str(KUBERNETES / folder)], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_kubernetes_manifests_validate_against_the_api_schema():
    """Every manifest, and what kustomize renders of base, overlays and monitoring, is a valid
    object of the pinned Kubernetes API (strict: no unknown fields)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    files = sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml")
    assert len(files) >= 9
    documents = [(str(path.relative_to(ROOT)), doc) for path in files for doc in k8s_documents(path)]
    if shutil.which("kubectl"):
        documents += [(f"kustomize {folder}", doc) for folder in ("base", "overlays/gpu", "monitoring")
                      for doc in kustomize(folder)]
    for where, doc in documents:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_kubernetes_probes_ports_and_env_agree_with_the_config(monkeypatch):
    from shared.api.semcom.v1 import semcom_pb2 as pb

    objects = k8s_objects("base")
    fields = {f"SEMCOM_{f.name.upper()}" for f in dataclasses.fields(SemcomConfig)}
    for name, (module, grpc_service, port_field, metrics_field) in K8S_SERVICES.items():
        pod = objects["Deployment", name]["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["python", "-m", module]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert set(env) - fields == {"SEMCOM_SERVICE"} and env["SEMCOM_SERVICE"] == module, name
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = load_config()  # the pod's settings, as the service parses them
        port, metrics_port = getattr(config, port_field), getattr(config, metrics_field)
        assert port == getattr(SemcomConfig, port_field) and config.bind_host == "0.0.0.0"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": port, "metrics": metrics_port}, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port, "service": pb.DESCRIPTOR.services_by_name[grpc_service].full_name}
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(metrics_port)
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}
        service = objects["Service", name]["spec"]
        assert service["selector"] == pod["metadata"]["labels"]
        assert {(p["port"], p["targetPort"]) for p in service["ports"]} == {(port, "grpc"), (metrics_port, "metrics")}
        for key in list(env):
            monkeypatch.delenv(key)
    # The hops dial every pod behind a headless Service (client-side round robin, shared/rpc.py).
    emulator = {e["name"]: e["value"] for e in objects["Deployment", "channel-emulator"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    transmitter = {e["name"]: e["value"] for e in objects["Deployment", "transmitter"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert emulator["SEMCOM_RECEIVER_ADDRESS"] == transmitter["SEMCOM_RECEIVER_ADDRESS"] == "dns:///receiver:50053"
    assert transmitter["SEMCOM_CHANNEL_ADDRESS"] == "dns:///channel-emulator:50052"
    assert objects["Service", "receiver"]["spec"]["clusterIP"] == objects["Service", "channel-emulator"]["spec"]["clusterIP"] == "None"


def test_kubernetes_autoscaler_adapter_and_alerts_use_exported_metrics():
    yaml = pytest.importorskip("yaml")
    base, monitoring = k8s_objects("base"), k8s_objects("monitoring")
    receiver_pod = base["Deployment", "receiver"]["spec"]["template"]["metadata"]["labels"]
    hpa = base["HorizontalPodAutoscaler", "receiver"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "receiver"}
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "semcom_queue_depth"
    assert base["PodDisruptionBudget", "receiver"]["spec"]["selector"]["matchLabels"] == receiver_pod
    # The adapter serves the HPA's metric per pod, from the labels the scrape job attaches.
    (rule,) = yaml.safe_load(monitoring["ConfigMap", "semcom-adapter-rules"]["data"]["config.yaml"])["rules"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert not unknown_metrics(rule["seriesQuery"] + rule["metricsQuery"]) and 'service="receiver"' in rule["metricsQuery"]
    config = monitoring["ConfigMap", "prometheus-config"]["data"]
    prometheus = yaml.safe_load(config["prometheus.yml"])
    (job,) = prometheus["scrape_configs"]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod", "__address__"} <= targets
    assert prometheus["rule_files"] == ["/etc/prometheus/semcom-alerts.yml"]
    rules = {r["alert"]: r["expr"] for g in yaml.safe_load(config["semcom-alerts.yml"])["groups"] for r in g["rules"]}
    assert {"SemcomErrorRatioHigh", "SemcomQueueBacklog", "SemcomLatencyP95High"} <= set(rules)
    for name, expr in rules.items():
        assert not unknown_metrics(expr), f"{name} uses unknown metrics: {expr}"
        for label, value in re.findall(r'\b(service|stage|status)!?="([a-z_A-Z]+)"', expr):
            assert value in {"service": SEMCOM_SERVICES, "stage": {"end_to_end"}, "status": {"OK"}}[label], expr
    backlog = float(rules["SemcomQueueBacklog"].rpartition(">")[2])
    assert backlog < SemcomConfig.receiver_queue_size  # alerts before the queue answers RESOURCE_EXHAUSTED


def test_kubernetes_gpu_overlay_puts_receivers_on_gpu_nodes():
    (patch,) = k8s_documents(KUBERNETES / "overlays/gpu/receiver-gpu.yaml")
    assert (patch["kind"], patch["metadata"]["name"]) in k8s_objects("base")
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in kustomize("overlays/gpu")}
    spec = rendered["Deployment", "receiver"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "semcom/semcom:cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {e["name"]: e["value"] for e in container["env"]}["SEMCOM_DEVICE"] == "cuda"
    assert "grpc" in container["readinessProbe"]  # the base's probes survive the patch
    transmitter = rendered["Deployment", "transmitter"]["spec"]["template"]["spec"]["containers"][0]
    assert transmitter["image"] == "semcom/semcom:cpu" and "nvidia.com/gpu" not in transmitter["resources"]["limits"]


def test_kubernetes_indexed_job_runs_every_shard_of_one_sweep():
    from semcom_cli.main import build_parser

    objects = k8s_objects("eval")
    sweep = objects["Job", "semcom-eval-sweep"]["spec"]
    assert sweep["completionMode"] == "Indexed"
    (container,) = sweep["template"]["spec"]["containers"]
    script = container["command"][2]
    assert container["command"][:2] == ["sh", "-c"] and script.startswith("K=$((JOB_COMPLETION_INDEX + 1)) && exec ")
    outs = set()
    for index in range(sweep["completions"]):  # what each pod runs, as the shell expands it
        argv = shlex.split(script.partition("exec ")[2].replace("$K", str(index + 1)))
        args = build_parser().parse_args(argv[1:])
        assert (args.shard.index, args.shard.count) == (index + 1, sweep["completions"])
        outs.add(args.out)
    assert len(outs) == sweep["completions"]
    merge = objects["Job", "semcom-eval-merge"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    argv = shlex.split(merge.removeprefix("exec "))
    pattern = Path(argv[3])  # the shell's glob over the shards' folders
    assert argv[:3] == ["semcom", "eval", "merge"] and len(argv) == 6 and argv[4] == "--out"
    assert all(out.parent == pattern.parent and fnmatch.fnmatch(out.name, pattern.name) for out in outs)


def test_swarm_stack_files_keep_the_services_and_drop_what_swarm_rejects(tmp_path):
    """scripts/swarm_stack.py + docker-compose.swarm.yml: the stack `docker stack deploy` takes
    (checked by `docker stack config` where the docker CLI is installed)."""
    yaml = pytest.importorskip("yaml")
    out = tmp_path / "stack.yml"
    subprocess.run([sys.executable, "scripts/swarm_stack.py", "docker-compose.yml", "docker-compose.local.yml",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=60)
    base, local = (yaml.safe_load((tmp_path / f"stack.{i}.yml").read_text()) for i in (0, 1))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "name" not in base and not any(key.startswith("x-") for key in base)
    assert set(base["services"]) == set(compose["services"])
    for name, service in base["services"].items():
        assert not {"build", "restart", "depends_on", "profiles"} & set(service), name
        assert service["image"] == compose["services"][name]["image"]
        assert service.get("environment") == compose["services"][name].get("environment")
        assert service.get("healthcheck") == compose["services"][name].get("healthcheck")
    assert local["services"]["grafana"] == {"deploy": {"replicas": 0}}  # profile "grafana": off, as in compose
    assert all(Path(v.partition(":")[0]).is_absolute() for v in base["services"]["prometheus"]["volumes"])
    swarm = yaml.safe_load((ROOT / "docker-compose.swarm.yml").read_text())
    assert set(swarm["services"]) <= set(compose["services"])
    receiver = swarm["services"]["receiver"]["deploy"]
    assert receiver["endpoint_mode"] == "dnsrr"  # `receiver` resolves to every task: the emulator's round robin
    assert receiver["update_config"]["order"] == "start-first"
    if shutil.which("docker"):
        config = subprocess.run(["docker", "stack", "config", "-c", str(tmp_path / "stack.0.yml"), "-c",
                                 str(tmp_path / "stack.1.yml"), "-c", str(ROOT / "docker-compose.swarm.yml")],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        if "unknown command" not in config.stderr:  # docker CLIs before 20.10 have no `stack config`
            assert config.returncode == 0, config.stderr
            merged = yaml.safe_load(config.stdout)["services"]
            assert merged["receiver"]["deploy"]["endpoint_mode"] == "dnsrr"
            assert merged["channel_emulator"]["networks"]["default"]["aliases"] == ["channel-emulator"]
