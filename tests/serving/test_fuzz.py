"""Property-based fuzzing of every RPC's request messages (Hypothesis) against the three services
with the tiny rate-adaptive codec: valid messages with fields set to arbitrary values of their
types, and arbitrary bytes in place of a message. Every call is answered, OK or with a clear
status (never INTERNAL or UNKNOWN); a stream answers each message it read, or ends with a status
that says why (never OK with a message unanswered)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_emulator.server import propagate
from semcom_cli.client import SendOptions
from shared.api.semcom.v1 import semcom_pb2 as pb
from transmitter.server import encode_request

from .test_adapter import adaptive_chain, random_adapter, tiny_model  # noqa: F401 (fixtures)
from .test_services import image_bytes

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
UNCLEAR = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
TIMEOUT_S = 60

_INTEGERS = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


def field_values(field: FieldDescriptor) -> st.SearchStrategy:
    """Arbitrary values of a scalar field's type, small and huge ones alike."""
    if field.type in _INTEGERS:
        low, high = _INTEGERS[field.type]
        return st.one_of(st.integers(max(low, -4), 70), st.integers(low, high))
    if field.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if field.type == FieldDescriptor.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(["", "awgn", "mimo", "rayleigh", "ls", "lmmse", "open_loop", "teacher:9"]),
                         st.text(max_size=40))
    return st.binary(max_size=64)


def scalar_fields(descriptor, prefix: tuple = ()) -> list[tuple[tuple, FieldDescriptor]]:
    """(path, field) of every settable scalar field, nested messages included (maps left out)."""
    fields = []
    for field in descriptor.fields:
        if field.message_type is not None:
            if not field.message_type.GetOptions().map_entry and not field.is_repeated:
                fields += scalar_fields(field.message_type, (*prefix, field.name))
        else:
            fields.append(((*prefix, field.name), field))
    return fields


@st.composite
def mutated(draw, seed):
    """``seed`` with a few of its fields (nested ones too) set to arbitrary values."""
    message = type(seed)()
    message.CopyFrom(seed)
    fields = scalar_fields(seed.DESCRIPTOR)
    for path, field in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=4, unique_by=lambda f: f[0])):
        owner = message
        for name in path[:-1]:
            owner = getattr(owner, name)
        if field.is_repeated:
            owner.ClearField(path[-1])
            getattr(owner, path[-1]).extend(draw(st.lists(field_values(field), max_size=8)))
        else:
            setattr(owner, path[-1], draw(field_values(field)))
    return message


@pytest.fixture(scope="module")
def seeds(adaptive_chain):  # noqa: F811
    """A valid request of every RPC."""
    config, codec = adaptive_chain.config, adaptive_chain.services[0].codec
    request = SendOptions(seed=3, user_id="fuzz").request("seed", image_bytes(32, 32, seed=2))
    frame, _ = encode_request(codec, request, config)
    update = pb.AdapterUpdate(user_id="fuzz", version=1, model=codec.name, parameters=random_adapter().to_bytes())
    adapt = pb.AdaptRequest(user_id="fuzz", images=[image_bytes(32, 32)], steps=2)
    return {"Transmit": request, "Propagate": frame, "Receive": propagate(frame, config), "TransmitOne": request,
            "Adapt": adapt, "PublishAdapter": update}


STREAMS = {"Transmit": "Transmitter", "Propagate": "ChannelEmulator", "Receive": "Receiver"}
UNARY = {"TransmitOne": ("Transmitter", pb.ImageResult), "Adapt": ("Transmitter", pb.AdaptResult),
         "PublishAdapter": ("Receiver", pb.AdapterAck)}


async def stream_call(target: str, method: str, messages: list[bytes]) -> tuple[list[pb.ImageResult], grpc.StatusCode, str]:
    """The answers and final status of a stream of serialized ``messages``."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_stream(f"/semcom.v1.{STREAMS[method]}/{method}", request_serializer=None,
                                     response_deserializer=pb.ImageResult.FromString)(iter(messages), timeout=TIMEOUT_S)
        results = []
        try:
            async for result in call:
                results.append(result)
        except grpc.aio.AioRpcError as exc:
            return results, exc.code(), exc.details()
        return results, await call.code(), await call.details()


async def unary_call(target: str, method: str, message: bytes) -> tuple[grpc.StatusCode, str]:
    service, answer = UNARY[method]
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/semcom.v1.{service}/{method}", request_serializer=None,
                                   response_deserializer=answer.FromString)
        try:
            await call(message, timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        return grpc.StatusCode.OK, ""


def assert_stream_answered(chain, method: str, messages: list[bytes], parsed: int) -> None:
    """``parsed`` of ``messages`` are readable: each is answered clearly, and an unreadable one ends the
    stream INVALID_ARGUMENT."""
    results, code, details = asyncio.run(stream_call(chain.targets[STREAMS[method]], method, messages))
    assert code not in UNCLEAR, (code, details)
    if parsed < len(messages):
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    else:
        assert code is grpc.StatusCode.OK, (code, details)
    assert len(results) == parsed, (len(results), parsed, code, details)
    for result in results:
        assert result.status.code not in {c.value[0] for c in UNCLEAR}, result.status


def readable(data: bytes, kind: type) -> bool:
    try:
        kind.FromString(data)
    except Exception:
        return False
    return True


REQUEST_TYPES = {"Transmit": pb.ImageRequest, "Propagate": pb.SymbolFrame, "Receive": pb.ReceivedFrame,
                 "TransmitOne": pb.ImageRequest, "Adapt": pb.AdaptRequest, "PublishAdapter": pb.AdapterUpdate}


@pytest.mark.parametrize("method", list(STREAMS))
def test_streams_answer_mutated_messages(adaptive_chain, seeds, method):  # noqa: F811
    @FUZZ
    @given(message=mutated(seeds[method]), request_id=st.text(min_size=1, max_size=8))
    def check(message, request_id):
        (message.frame if method == "Receive" else message).request_id = request_id
        assert_stream_answered(adaptive_chain, method, [message.SerializeToString()], 1)

    check()


@pytest.mark.parametrize("method", list(STREAMS))
def test_streams_end_invalid_argument_on_unreadable_bytes(adaptive_chain, seeds, method):  # noqa: F811
    @settings(FUZZ, max_examples=25)
    @given(data=st.binary(min_size=1, max_size=64))
    def check(data):
        good = seeds[method].SerializeToString()
        messages = [good, data] if readable(data, REQUEST_TYPES[method]) else [good, data, good]
        parsed = 2 if len(messages) == 2 else 1
        # a readable data stream answers both (the two share request id "seed": ALREADY_EXISTS or in turn)
        assert_stream_answered(adaptive_chain, method, messages, parsed)

    check()


@pytest.mark.parametrize("method", list(UNARY))
def test_unary_calls_answer_clearly(adaptive_chain, seeds, method):  # noqa: F811
    @FUZZ
    @given(message=st.one_of(mutated(seeds[method]).map(lambda m: m.SerializeToString()), st.binary(max_size=64)))
    def check(message):
        code, details = asyncio.run(unary_call(adaptive_chain.targets[UNARY[method][0]], method, message))
        assert code not in UNCLEAR, (code, details)

    check()
