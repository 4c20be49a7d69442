"""``ChatStream``: OpenAI-shaped chunk dicts from an open SSE response, closed promptly.

The stream owns the HTTP response. It closes it when ``[DONE]`` arrives (once the rest of
the body is read, so the connection serves the next request), when anything goes wrong,
when the consumer calls ``aclose()`` or leaves ``async with``, when the task iterating it
is cancelled, and when an ``async for`` over it is left with ``break`` — so an abandoned
answer stops at the gateway at once.

``async for`` runs over a fresh async generator (``__aiter__``); leaving the loop drops
that generator, and asyncio's async-generator finalizer runs its ``finally`` (which closes
the response) on the next turn of the event loop. ``async with stream:`` or an explicit
``aclose()`` closes it synchronously and is still the clearest way to write it.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from behest_chat.behest import errors
from behest_chat.behest.sse import DONE, ServerSentEvent, SSEDecodeError, SSEDecoder
from behest_chat.behest.transport import body_chunks, hold_reading

__all__ = ["ChatStream"]

_E = TypeVar("_E", bound=errors.BehestError)
# What may follow [DONE] before the connection is given up rather than reused.
_DRAIN_BYTES = 64 * 1024
_DRAIN_TIMEOUT_S = 0.25


class ChatStream:
    """Async iterator of chat completion chunks (dicts) from one streamed response.

    Attributes:
        trace_id: the gateway's ``X-Trace-Id`` for this request.
        session_id: the ``X-Session-Id`` sent with the request.
        response: the underlying httpx response (status 200, body not yet read).
        read_pause: seconds to let the answer gather in the socket before each read after
            the first (0, the default: read every token as it arrives). A consumer that
            passes text on in batches anyway can set it to spend less CPU per token
            (see :func:`~behest_chat.behest.transport.hold_reading`); the end of the
            answer is then seen up to that much later.
    """

    def __init__(self, response: httpx.Response, *, session_id: str) -> None:
        """Wrap an open streaming response whose status was already checked.

        Args:
            response: an httpx response sent with ``stream=True``.
            session_id: the session id the request carried.
        """
        self.response = response
        self.session_id = session_id
        self.trace_id: str | None = response.headers.get("x-trace-id")
        self._bytes: AsyncIterator[bytes] = body_chunks(response)
        self.read_pause = 0.0
        self._reads = 0
        self._decoder = SSEDecoder()
        self._ready: deque[ServerSentEvent] = deque()
        self._finished = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the HTTP response has been closed."""
        return self._closed

    @property
    def done(self) -> bool:
        """True when the stream ended with ``[DONE]`` (a complete answer)."""
        return self._finished

    def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        return self._chunks()

    async def _chunks(self) -> AsyncGenerator[dict[str, Any], None]:
        try:
            while True:
                try:
                    chunk = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            await self.aclose()

    async def __anext__(self) -> dict[str, Any]:
        if self._finished or self._closed:
            raise StopAsyncIteration
        try:
            while True:
                while self._ready:
                    chunk = self._chunk_from(self._ready.popleft())
                    if chunk is not None:
                        return chunk
                    if self._finished:
                        await self._read_to_end()
                        await self.aclose()
                        raise StopAsyncIteration
                await self._read_more()
        except StopAsyncIteration:
            raise
        except BaseException:
            # Errors, cancellation, GeneratorExit: the connection must not outlive them.
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the HTTP response now; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await self.response.aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _read_to_end(self) -> None:
        """After ``[DONE]``, read what is left of the body (the chunked encoding's last
        chunk), so the connection goes back to the pool for the next request instead of
        being closed. A server that keeps sending or stalls only costs the connection."""
        left = _DRAIN_BYTES
        try:
            async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                async for data in self._bytes:
                    left -= len(data)
                    if left < 0:
                        return
        except (TimeoutError, httpx.TransportError, httpx.StreamError):
            return

    async def _read_more(self) -> None:
        if self.read_pause > 0 and self._reads:
            await hold_reading(self.response, self.read_pause)
        self._reads += 1
        try:
            data = await anext(self._bytes)
        except StopAsyncIteration:
            raise self._error(errors.StreamCutError, "stream ended before [DONE]") from None
        except httpx.TimeoutException:
            raise self._error(
                errors.TimeoutError, "no stream data within the read timeout"
            ) from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise self._error(
                errors.StreamCutError,
                f"stream connection broke before [DONE] ({type(exc).__name__})",
            ) from None
        try:
            self._ready.extend(self._decoder.feed(data))
        except SSEDecodeError as exc:
            raise self._error(errors.MalformedFrameError, str(exc)) from None

    def _chunk_from(self, event: ServerSentEvent) -> dict[str, Any] | None:
        if event.data == DONE:
            self._finished = True
            return None
        try:
            payload = json.loads(event.data)
        except ValueError:
            if event.event == "error":
                raise self._in_band_error(event.data) from None
            raise self._error(errors.MalformedFrameError, "stream frame is not JSON") from None
        if event.event == "error" or (isinstance(payload, dict) and "error" in payload):
            raise self._in_band_error(payload)
        if not isinstance(payload, dict):
            raise self._error(errors.MalformedFrameError, "stream frame is not a JSON object")
        return payload

    def _in_band_error(self, payload: object) -> errors.StreamErrorEvent:
        """Read ``{"error": {code, message, details}}``, ``{"error": "text", "code": …}``
        or a bare message."""
        code: object = None
        details: object = None
        body = payload.get("error", payload) if isinstance(payload, dict) else payload
        if isinstance(body, dict):
            code, message, details = body.get("code"), body.get("message"), body.get("details")
        else:
            message = body
            if isinstance(payload, dict):
                code = payload.get("code")
        text = " ".join(message.split())[:300] if isinstance(message, str) else ""
        return self._error(
            errors.StreamErrorEvent,
            text or "error event in stream",
            code=code if isinstance(code, str) and code else None,
            details=details if isinstance(details, dict) else None,
        )

    def _error(
        self,
        cls: type[_E],
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> _E:
        return cls(
            message,
            status=self.response.status_code,
            code=code,
            details=details,
            trace_id=self.trace_id,
        )
