"""gRPC plumbing common to the services: server start-up, health, reflection (when enabled), unreadable
requests, channels, statuses."""

from __future__ import annotations

import logging
import socket

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..api.semcom.v1 import semcom_pb2 as pb
from ..codecs.base import FrameLost
from ..config import SemcomConfig
from .adapters import AdapterMissing
from .security import Authenticate, bearer_token, channel_credentials, load_tokens, presented_token, server_credentials

log = logging.getLogger("semcom.rpc")


def message_options(config: SemcomConfig) -> list[tuple[str, int]]:
    """Message size limits for full-resolution photos and their symbol frames."""
    return [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
    ]


def open_channel(target: str, config: SemcomConfig) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` with the project's message limits, over TLS when
    ``config.tls_ca_file`` is set, presenting this process's token when it has one
    (:mod:`.security`).

    Round-robin load balancing: when ``target`` resolves to several addresses (e.g. the
    replicas of ``docker compose up --scale receiver=N`` behind one DNS name), streams are
    spread over them.
    """
    options = [*message_options(config), ("grpc.lb_policy_name", "round_robin")]
    token = presented_token(config)
    interceptors = bearer_token(token) if token else None
    credentials = channel_credentials(config)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


def replica_targets(target: str) -> list[str]:
    """Every server behind ``target``: for ``dns:///host:port`` one ``ip:port`` per resolved address
    (the replicas of ``docker compose up --scale``), otherwise ``target`` itself. ``OSError`` when the
    name does not resolve."""
    if not target.startswith("dns:///"):
        return [target]
    host, _, port = target.removeprefix("dns:///").rpartition(":")
    addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)})
    return [f"[{address}]:{port}" if ":" in address else f"{address}:{port}" for address in addresses]


class UnreadableRequest:
    """What a unary call's request deserializer gives for bytes that are not a message of its type."""

    def __init__(self, error: DecodeError):
        self.error = error


class AnswerUnreadable(grpc.aio.ServerInterceptor):
    """Unary calls whose request does not parse are answered INVALID_ARGUMENT (gRPC's own answer is
    UNKNOWN); streams answer theirs themselves (:meth:`~.streaming.StreamSession.run`)."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        deserialize, behaviour = handler.request_deserializer, handler.unary_unary

        def read(data: bytes):
            try:
                return deserialize(data)
            except DecodeError as exc:
                return UnreadableRequest(exc)

        async def answer(request, context):
            if isinstance(request, UnreadableRequest):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid message: {request.error}")
            return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(answer, request_deserializer=read,
                                                   response_serializer=handler.response_serializer)


async def start_server(config: SemcomConfig, port: int, service_name: str, register) -> tuple[grpc.aio.Server, int]:
    """Start an asyncio gRPC server with health checking (and reflection with ``config.reflection``) on
    ``config.listen_host``, over TLS and with token authentication when configured (:mod:`.security`).

    ``register(server)`` adds the servicer. ``port`` 0 picks a free port. Returns the
    server and the bound port.
    """
    options = message_options(config)
    if config.grpc_max_connection_age_s > 0:
        # GOAWAY after this age: clients reconnect, re-resolve and see replicas added since.
        options.append(("grpc.max_connection_age_ms", int(config.grpc_max_connection_age_s * 1000)))
    credentials = server_credentials(config, service_name)
    interceptors = [AnswerUnreadable()]
    if config.auth_tokens_file:
        interceptors.append(Authenticate(load_tokens(config.auth_tokens_file)))
    server = grpc.aio.server(options=options, interceptors=interceptors)
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    full_name = pb.DESCRIPTOR.services_by_name[service_name].full_name
    if config.reflection:
        reflection.enable_server_reflection((full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"[{config.listen_host}]:{port}" if ":" in config.listen_host else f"{config.listen_host}:{port}"
    bound = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"cannot bind {service_name} to {address}")
    await server.start()
    for name in ("", full_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s listening on %s:%d", service_name, config.listen_host, bound)
    return server, bound


def error_result(request_id: str, user_id: str, code: grpc.StatusCode, message: str) -> pb.ImageResult:
    """A failed request's answer."""
    return pb.ImageResult(request_id=request_id, user_id=user_id, status=pb.Status(code=code.value[0], message=message))


def status_code(result: pb.ImageResult) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a result's status number."""
    for code in grpc.StatusCode:
        if code.value[0] == result.status.code:
            return code
    return grpc.StatusCode.UNKNOWN


def code_for_exception(exc: BaseException) -> grpc.StatusCode:
    """How a stage's exception is reported (the one place domain errors become status codes): a
    lost frame, a missing adapter, bad input, an unsupported option, or an internal fault."""
    if isinstance(exc, FrameLost):
        return grpc.StatusCode.DATA_LOSS
    if isinstance(exc, AdapterMissing):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED
    return grpc.StatusCode.INTERNAL
