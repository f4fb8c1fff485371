"""Who may call what, over which transport: per-user tokens, the services' own identity, TLS.

Authentication (``SEMCOM_AUTH_TOKENS_FILE``): a file of ``<token> <identity>`` lines (``#`` starts
a comment). A client presents its token as ``authorization: Bearer <token>`` metadata; its identity
is its user: the ``user_id`` of each of its requests is replaced by it (a client cannot speak for
another user). The identity :data:`SERVICE_IDENTITY` is the services' own: only it is admitted to
the internal RPCs (``ChannelEmulator.Propagate``, ``Receiver.Receive``, ``Receiver.PublishAdapter``),
and it is refused on the client RPCs. Health checks need no token (probes).

TLS (``SEMCOM_TLS_CERT_FILE``, ``SEMCOM_TLS_KEY_FILE``, ``SEMCOM_TLS_CA_FILE``, PEM): servers present
their certificate; the channel emulator and the receiver also require a client certificate signed by
the CA (mTLS between the services); clients verify servers against the CA and present their own
certificate when they have one. Plaintext is served on loopback, elsewhere only with
``SEMCOM_PLAINTEXT=1``.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError

from ..config import SemcomConfig

SERVICE_IDENTITY = "@service"
CLIENT_SERVICE = "/semcom.v1.Transmitter/"
"""The methods clients call (with a user's token); every other ``semcom.v1`` method is internal."""
OPEN_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Methods served without a token (health probes; reflection, when it is enabled at all)."""
CLIENT_CERTIFICATE_OPTIONAL = ("Transmitter",)
"""Services that do not require a client certificate under TLS (end users' clients have none)."""


def load_tokens(path: str | Path) -> dict[str, str]:
    """Token -> identity from a tokens file (``ValueError`` for a malformed line or a repeated token)."""
    tokens: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[0] in tokens:
            raise ValueError(f"{path}:{number}: expected '<token> <identity>' with a token of its own")
        tokens[words[0]] = words[1]
    return tokens


def presented_token(config: SemcomConfig) -> str:
    """The token this process presents: ``SEMCOM_TOKEN``, else (a service) the service identity's
    token in the tokens file, else none."""
    if config.token or not config.auth_tokens_file:
        return config.token
    return next((token for token, identity in load_tokens(config.auth_tokens_file).items()
                 if identity == SERVICE_IDENTITY), "")


def _handler_like(handler: grpc.RpcMethodHandler, behaviour, request_deserializer=None) -> grpc.RpcMethodHandler:
    """A method handler of ``handler``'s kind and serializers running ``behaviour``."""
    make = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    return make[handler.request_streaming, handler.response_streaming](
        behaviour, request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer)


def _behaviour(handler: grpc.RpcMethodHandler):
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


def _bearer(metadata) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value.removeprefix("Bearer ")
    return ""


class Authenticate(grpc.aio.ServerInterceptor):
    """Admits a call by its token (see the module): unknown or missing -> UNAUTHENTICATED, a client
    on an internal RPC or the service identity on a client RPC -> PERMISSION_DENIED; stamps client
    requests with the token's user."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHODS):
            return handler
        identity = self.tokens.get(_bearer(handler_call_details.invocation_metadata))
        client_method = method.startswith(CLIENT_SERVICE)
        if identity is None:
            return self._refusal(handler, grpc.StatusCode.UNAUTHENTICATED,
                                 "a valid token is required (metadata 'authorization: Bearer <token>')")
        if client_method == (identity == SERVICE_IDENTITY):
            who = "the services' identity" if client_method else f"user {identity!r}"
            return self._refusal(handler, grpc.StatusCode.PERMISSION_DENIED, f"{method} is not open to {who}")
        return self._as_user(handler, identity) if client_method else handler

    @staticmethod
    def _refusal(handler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
        async def refuse(request, context):
            if handler.request_streaming:  # read what the client sends: a refusal mid-write reaches it as INTERNAL
                with contextlib.suppress(DecodeError):
                    async for _ in request:
                        pass
            await context.abort(code, message)

        return _handler_like(handler, refuse)

    @staticmethod
    def _as_user(handler, user_id: str) -> grpc.RpcMethodHandler:
        behaviour = _behaviour(handler)

        def stamp(request):
            if hasattr(request, "user_id"):  # not an unreadable message (answered by AnswerUnreadable)
                request.user_id = user_id
            return request

        async def stamped(requests):
            async for request in requests:
                yield stamp(request)

        prepare = stamped if handler.request_streaming else stamp
        if handler.response_streaming:  # gRPC tells the kinds of behaviour apart by their function type
            async def as_user(request, context):
                async for response in behaviour(prepare(request), context):
                    yield response
        else:
            async def as_user(request, context):
                return await behaviour(prepare(request), context)
        return _handler_like(handler, as_user)


class _BearerToken:
    """Adds ``authorization: Bearer <token>`` to a call's metadata."""

    def __init__(self, token: str):
        self.token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", f"Bearer {self.token}")
        return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                          details.wait_for_ready)

    async def intercept(self, continuation, client_call_details, request_or_iterator):
        """Any kind of call: the same call with the token in its metadata."""
        return await continuation(self._details(client_call_details), request_or_iterator)


class _UnaryUnaryToken(_BearerToken, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _BearerToken.intercept


class _UnaryStreamToken(_BearerToken, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _BearerToken.intercept


class _StreamUnaryToken(_BearerToken, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _BearerToken.intercept


class _StreamStreamToken(_BearerToken, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _BearerToken.intercept


def bearer_token(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors presenting ``token`` on every call of a channel (gRPC takes one
    interceptor per kind of call)."""
    return [kind(token) for kind in (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)]


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def server_credentials(config: SemcomConfig, service_name: str) -> grpc.ServerCredentials | None:
    """TLS credentials of a service (``None``: plaintext, which ``ValueError`` refuses off loopback
    unless ``config.plaintext``)."""
    if not config.tls_cert_file:
        if not (config.plaintext or is_loopback(config.listen_host)):
            raise ValueError(f"{service_name} would serve plaintext on {config.listen_host}: set SEMCOM_TLS_CERT_FILE, "
                             "SEMCOM_TLS_KEY_FILE (and SEMCOM_TLS_CA_FILE), or SEMCOM_PLAINTEXT=1 on a trusted network")
        return None
    ca = _read(config.tls_ca_file)
    return grpc.ssl_server_credentials([(_read(config.tls_key_file), _read(config.tls_cert_file))],
                                       root_certificates=ca,
                                       require_client_auth=ca is not None and service_name not in CLIENT_CERTIFICATE_OPTIONAL)


def channel_credentials(config: SemcomConfig) -> grpc.ChannelCredentials | None:
    """TLS credentials of a client (``None``: plaintext): the CA to verify servers, and this process's
    certificate when it has one (the services' mTLS)."""
    if not config.tls_ca_file:
        return None
    return grpc.ssl_channel_credentials(_read(config.tls_ca_file), _read(config.tls_key_file),
                                        _read(config.tls_cert_file))


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
