"""Bidirectional-stream machinery shared by the three services.

A :class:`StreamSession` serves one incoming stream: each request is handled in its own
task, results are yielded as they complete (in any order), and every request id gets
exactly one answer, even when a handler fails or the downstream service goes away.
A :class:`Downstream` is the session's own stream to the next service in the chain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ..api.semcom.v1 import semcom_pb2 as pb
from .rpc import code_for_exception, error_result, status_code
from .telemetry import IMAGES, IN_FLIGHT

log = logging.getLogger("semcom.streaming")


class StreamSession:
    """One incoming stream's bookkeeping.

    Args:
        service: metrics label.
        handle: ``handle(request, session)`` processes one request; it must end by calling
            :meth:`answer` or :meth:`forward` for the request's id. An exception it raises is
            answered as an error result.
        request_key: ``request_key(request) -> (request_id, user_id)``.
    """

    def __init__(self, service: str, handle: Callable[[Any, "StreamSession"], Awaitable[None]],
                 request_key: Callable[[Any], tuple[str, str]]):
        self.service = service
        self._handle = handle
        self._request_key = request_key
        self._results: asyncio.Queue[pb.ImageResult | None] = asyncio.Queue()
        self._outstanding: dict[str, str] = {}  # request_id -> user_id
        self._contexts: dict[str, Any] = {}  # forwarded request_id -> what the forwarder kept
        self._tasks: set[asyncio.Task] = set()
        self._all_answered = asyncio.Event()
        self._all_answered.set()
        self.downstream: Downstream | None = None
        self.closed = False  # the stream ended or was cancelled: nobody reads answers any more

    # -- requests ---------------------------------------------------------------------
    def spawn(self, coro: Awaitable) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def accept(self, request) -> None:
        """Register ``request`` and start its handler (a duplicate in-flight id is refused)."""
        request_id, user_id = self._request_key(request)
        if request_id in self._outstanding:
            self._results.put_nowait(error_result(
                request_id, user_id, grpc.StatusCode.ALREADY_EXISTS,
                f"request id {request_id!r} is already in flight on this stream"))
            IMAGES.labels(self.service, grpc.StatusCode.ALREADY_EXISTS.name).inc()
            return
        self._outstanding[request_id] = user_id
        self._all_answered.clear()
        IN_FLIGHT.labels(self.service).inc()
        self.spawn(self._run_handler(request, request_id, user_id))

    async def _run_handler(self, request, request_id: str, user_id: str) -> None:
        try:
            await self._handle(request, self)
        except Exception as exc:  # every request gets an answer; the stream goes on
            code = getattr(exc, "grpc_code", None) or code_for_exception(exc)  # e.g. a fair queue's refusal
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s: request %s failed", self.service, request_id)
            self.answer(error_result(request_id, user_id, code, str(exc) or type(exc).__name__))

    # -- answers ----------------------------------------------------------------------
    def answer(self, result: pb.ImageResult) -> None:
        """Deliver the one answer of ``result.request_id`` (later answers are dropped)."""
        if self._outstanding.pop(result.request_id, None) is None:
            return
        self._contexts.pop(result.request_id, None)
        if not self._outstanding:
            self._all_answered.set()
        IN_FLIGHT.labels(self.service).dec()
        IMAGES.labels(self.service, status_code(result).name).inc()
        self._results.put_nowait(result)

    # -- downstream -------------------------------------------------------------------
    def forward(self, request_id: str, frame, context: Any = None) -> None:
        """Send ``frame`` downstream; its result comes back to ``on_result(result, context)``."""
        if request_id not in self._outstanding:
            return
        if self.downstream.failure is not None:
            code, message = self.downstream.failure
            self.answer(error_result(request_id, self._outstanding[request_id], code, message))
            return
        if (size := frame.ByteSize()) > self.downstream.max_frame_bytes:  # it would end the stream for all
            self.answer(error_result(request_id, self._outstanding[request_id], grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     f"the frame for {self.downstream.peer} is {size} bytes, over the message limit "
                                     f"of {self.downstream.max_frame_bytes}"))
            return
        self._contexts[request_id] = context
        self.downstream.send(frame)

    def open_downstream(self, open_call: Callable, peer: str,
                        on_result: Callable[[pb.ImageResult, Any], Awaitable[pb.ImageResult]],
                        max_frame_bytes: int) -> None:
        """Open the stream to the next service; ``on_result`` turns its results into ours. A frame of
        more than ``max_frame_bytes`` (the gRPC message limit) is answered RESOURCE_EXHAUSTED instead of
        being sent (gRPC would fail the whole stream)."""

        async def deliver(result: pb.ImageResult, context: Any) -> None:
            try:
                self.answer(await on_result(result, context))
            except Exception as exc:
                log.exception("%s: finishing request %s failed", self.service, result.request_id)
                self.answer(error_result(result.request_id, result.user_id, code_for_exception(exc), str(exc)))

        def received(result: pb.ImageResult) -> None:
            if result.request_id in self._contexts:
                self.spawn(deliver(result, self._contexts.pop(result.request_id)))

        def on_failure(code: grpc.StatusCode, message: str) -> None:
            for request_id in list(self._contexts):
                del self._contexts[request_id]
                self.answer(error_result(request_id, self._outstanding.get(request_id, ""), code, message))

        self.downstream = Downstream(open_call, peer, received, on_failure, max_frame_bytes)

    # -- the stream -------------------------------------------------------------------
    async def run(self, request_iterator: AsyncIterator, context) -> AsyncIterator[pb.ImageResult]:
        """Consume ``request_iterator`` and yield every answer; ends when all are answered.

        A message that cannot be read (not a message of the RPC's request type) ends the stream:
        the requests read before it are answered, then the call ends INVALID_ARGUMENT
        (``context.abort``), never OK with the unreadable one unanswered.
        """
        read_failure: tuple[grpc.StatusCode, str] | None = None

        async def consume() -> None:
            nonlocal read_failure
            read = 0
            try:
                async for request in request_iterator:
                    read += 1
                    self.accept(request)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                raise
            except DecodeError as exc:
                read_failure = (grpc.StatusCode.INVALID_ARGUMENT,
                                f"message {read + 1} of the stream is not a valid request: {exc}")
            except Exception as exc:
                log.exception("%s: reading the request stream failed", self.service)
                read_failure = (grpc.StatusCode.INTERNAL, f"reading message {read + 1} of the stream failed: {exc}")
            await self._drain()
            if self.downstream is not None:
                await self.downstream.close()
                await self._drain()
            await self._all_answered.wait()
            self._results.put_nowait(None)

        consumer = asyncio.ensure_future(consume())
        try:
            while (result := await self._results.get()) is not None:
                yield result
            if read_failure is not None:
                await context.abort(*read_failure)
        finally:
            self.closed = True
            consumer.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self.downstream is not None:
                self.downstream.cancel()
            IN_FLIGHT.labels(self.service).dec(len(self._outstanding))
            self._outstanding.clear()

    async def _drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class Downstream:
    """A bidirectional call to the next service.

    Frames go out through :meth:`send`; each result is passed to ``on_result``; if the
    call fails or ends early, ``failure`` is set and ``on_failure(code, message)`` answers
    what is left.
    """

    def __init__(self, open_call: Callable, peer: str, on_result: Callable[[pb.ImageResult], None],
                 on_failure: Callable[[grpc.StatusCode, str], None], max_frame_bytes: int):
        self.peer = peer
        self.max_frame_bytes = max_frame_bytes
        self.failure: tuple[grpc.StatusCode, str] | None = None
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._call = open_call(self._frames())
        self._on_result = on_result
        self._on_failure = on_failure
        self._reader = asyncio.ensure_future(self._read())

    async def _frames(self):
        while (frame := await self._outbox.get()) is not None:
            yield frame

    def send(self, frame) -> None:
        self._outbox.put_nowait(frame)

    async def close(self) -> None:
        """Half-close and wait until the peer has answered everything sent."""
        self._outbox.put_nowait(None)
        await asyncio.shield(self._reader)

    def cancel(self) -> None:
        self._reader.cancel()
        self._call.cancel()

    async def _read(self) -> None:
        try:
            async for result in self._call:
                self._on_result(result)
            code, message = grpc.StatusCode.INTERNAL, "stream ended before answering"
        except grpc.aio.AioRpcError as exc:
            code, message = exc.code(), exc.details() or exc.code().name
        except asyncio.CancelledError:
            return
        self.failure = (code, f"{self.peer}: {message}")
        self._on_failure(*self.failure)
