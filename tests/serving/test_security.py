"""Authentication and TLS (shared/serving/security.py): the three services over real TLS (mTLS
between them) on loopback with a dev CA from scripts/make_certs.sh, per-user tokens, the services'
identity on the internal RPCs."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess

import grpc
import pytest

from semcom_cli.client import SendOptions, is_ok, stream_requests
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.config import REPO_ROOT, load_config
from shared.serving.rpc import open_channel
from shared.serving.security import SERVICE_IDENTITY, load_tokens, server_credentials

from ..conftest import Chain
from .test_services import image_bytes

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="scripts/make_certs.sh needs openssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certs")
    subprocess.run([str(REPO_ROOT / "scripts" / "make_certs.sh"), str(folder)], check=True, capture_output=True)
    tokens = folder / "tokens.txt"
    tokens.write_text(tokens.read_text() + "alice-token alice\n")
    return folder


@pytest.fixture(scope="module")
def secure_chain(tiny_weights, certs):
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu",
                         tls_cert_file=str(certs / "service.pem"), tls_key_file=str(certs / "service.key"),
                         tls_ca_file=str(certs / "ca.pem"), auth_tokens_file=str(certs / "tokens.txt"))
    running = Chain(config).start()
    yield running
    running.stop()


def service_token(certs) -> str:
    return next(t for t, identity in load_tokens(certs / "tokens.txt").items() if identity == SERVICE_IDENTITY)


def client_config(certs, token: str = "alice-token", **overrides):
    """A client's settings: the CA (no certificate of its own) and a token."""
    return load_config(tls_ca_file=str(certs / "ca.pem"), token=token, **overrides)


def transmit(target: str, config, user_id: str = "mallory") -> pb.ImageResult:
    async def collect():
        request = SendOptions(seed=1, user_id=user_id).request("r", image_bytes(32, 32))
        return [r async for r in stream_requests(target, [request], config, timeout_s=60)]

    return asyncio.run(collect())[0]


def failure(target: str, config) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        transmit(target, config)
    return error.value.code()


def test_a_user_is_served_over_tls_as_the_user_of_its_token(secure_chain, certs):
    result = transmit(secure_chain.target, client_config(certs), user_id="mallory")
    assert is_ok(result), result.status.message
    assert result.user_id == "alice"  # the token's user, not the one the request claimed


def test_calls_without_a_valid_token_are_unauthenticated(secure_chain, certs):
    assert failure(secure_chain.target, client_config(certs, token="")) is grpc.StatusCode.UNAUTHENTICATED
    assert failure(secure_chain.target, client_config(certs, token="guess")) is grpc.StatusCode.UNAUTHENTICATED


def test_plaintext_to_a_tls_service_fails(secure_chain, certs):
    assert failure(secure_chain.target, load_config(token="alice-token")) is grpc.StatusCode.UNAVAILABLE


def test_the_services_identity_is_refused_on_client_calls(secure_chain, certs):
    assert failure(secure_chain.target, client_config(certs, token=service_token(certs))) is \
        grpc.StatusCode.PERMISSION_DENIED


def publish(target: str, config) -> grpc.StatusCode:
    async def call():
        async with open_channel(target, config) as channel:
            update = pb.AdapterUpdate(user_id="victim", version=1, model="deepjscc", parameters=b"")
            try:
                await pb_grpc.ReceiverStub(channel).PublishAdapter(update, timeout=30)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    return asyncio.run(call())


def test_internal_rpcs_need_the_services_certificate_and_identity(secure_chain, certs):
    receiver = secure_chain.targets["Receiver"]
    # no client certificate: the TLS handshake with the receiver fails (mTLS)
    assert publish(receiver, client_config(certs)) is grpc.StatusCode.UNAVAILABLE
    with_certificate = client_config(certs, tls_cert_file=str(certs / "service.pem"),
                                     tls_key_file=str(certs / "service.key"))
    assert publish(receiver, with_certificate) is grpc.StatusCode.PERMISSION_DENIED  # a user's token
    as_service = dataclasses.replace(with_certificate, token=service_token(certs))
    assert publish(receiver, as_service) is grpc.StatusCode.INVALID_ARGUMENT  # admitted; the update is bad


def test_plaintext_is_refused_off_loopback_unless_configured():
    assert server_credentials(load_config(bind_host="127.0.0.1"), "Receiver") is None
    with pytest.raises(ValueError, match="SEMCOM_PLAINTEXT"):
        server_credentials(load_config(bind_host="0.0.0.0"), "Receiver")
    assert server_credentials(load_config(bind_host="0.0.0.0", plaintext=True), "Receiver") is None


def test_tokens_file_format(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("# comment\nabc alice  # trailing\n\ndef @service\n")
    assert load_tokens(path) == {"abc": "alice", "def": SERVICE_IDENTITY}
    path.write_text("abc alice\nabc bob\n")
    with pytest.raises(ValueError, match=":2:"):
        load_tokens(path)
