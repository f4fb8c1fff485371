"""Server start-up (shared/serving/rpc.py) and the metrics exporter: bind addresses, reflection."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from shared.config import load_config
from shared.serving.rpc import start_server
from shared.serving.telemetry import start_metrics_server

from ..conftest import free_port


def reachable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


async def serving(config):
    """A bare Receiver server (health only) on ``config``; returns (server, port)."""
    return await start_server(config, 0, "Receiver", lambda server: None)


def test_services_listen_on_the_configured_host_only():
    async def check():
        server, port = await serving(load_config(host="127.0.0.1", bind_host=""))
        try:  # 127.0.0.2 is loopback too, but another address: a server on all interfaces answers there
            return reachable("127.0.0.1", port), reachable("127.0.0.2", port)
        finally:
            await server.stop(0)

    assert asyncio.run(check()) == (True, False)


def test_bind_host_overrides_the_host():
    async def check():
        server, port = await serving(load_config(host="127.0.0.1", bind_host="0.0.0.0", plaintext=True))
        try:
            return reachable("127.0.0.2", port)
        finally:
            await server.stop(0)

    assert asyncio.run(check())


def test_metrics_listen_on_the_given_host():
    port = free_port()
    start_metrics_server("127.0.0.1", port)
    assert b"semcom_" in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert not reachable("127.0.0.2", port)


@pytest.mark.parametrize("enabled", [False, True])
def test_reflection_only_when_enabled(enabled):
    async def check():
        server, port = await serving(load_config(bind_host="127.0.0.1", reflection=enabled))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
                try:
                    answers = [answer async for answer in call]
                except grpc.aio.AioRpcError as exc:
                    return health.status, exc.code(), []
                return health.status, grpc.StatusCode.OK, [s.name for s in answers[0].list_services_response.service]
        finally:
            await server.stop(0)

    status, code, services = asyncio.run(check())
    assert status == health_pb2.HealthCheckResponse.SERVING
    if enabled:
        assert code is grpc.StatusCode.OK and "semcom.v1.Receiver" in services
    else:
        assert code is grpc.StatusCode.UNIMPLEMENTED
