"""The deployment files agree with the code: compose, Prometheus, Grafana dashboard, healthcheck.

Fast and Docker-free (the stack itself runs in the slow tests/test_compose_stack.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import SemcomConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
SEMCOM_SERVICES = {"transmitter": 50051, "channel_emulator": 50052, "receiver": 50053}


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


def test_dashboard_queries_name_real_metrics():
    from prometheus_client import REGISTRY

    import shared.serving.telemetry  # noqa: F401  (registers the metrics)

    known = {m.name for m in REGISTRY.collect()}
    dash = json.loads((ROOT / "deploy/grafana/dashboards/semcom.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\b(semcom_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|sum|count|total)$", "", name)
            assert base in known, f"dashboard query uses unknown metric {name}: {expr}"
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            assert t["datasource"]["uid"] == "semcom-prometheus"
    yaml = pytest.importorskip("yaml")
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "semcom-prometheus"


def test_servers_close_old_connections_and_clients_reconnect():
    """SEMCOM_GRPC_MAX_CONNECTION_AGE_S: calls keep working across the server's GOAWAY."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from shared.serving.rpc import insecure_channel, start_server

    async def scenario():
        config = load_config(bind_host="127.0.0.1", grpc_max_connection_age_s=0.3)
        server, port = await start_server(config, 0, "Receiver", lambda s: None)
        try:
            async with insecure_channel(f"dns:///127.0.0.1:{port}", config) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                for _ in range(3):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5, wait_for_ready=True)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                    await asyncio.sleep(0.5)
        finally:
            await server.stop(0)

    asyncio.run(scenario())
