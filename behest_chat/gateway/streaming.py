"""Server-sent events as Behest's SDKs read them (contract §4.3, §14).

Every event is ``data: <json>`` followed by LF LF (never CRLF: the TypeScript SDK splits on
``"\\n\\n"`` only); the stream ends with ``data: [DONE]``. Content chunks are built from a
pre-rendered prefix so a chunk costs one small ``json.dumps`` of the token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Send

from behest_chat.gateway.errors import GatewayError, envelope

__all__ = ["DONE_FRAME", "ChunkWriter", "EventStreamResponse", "error_frame", "frame"]

DONE_FRAME = b"data: [DONE]\n\n"


def frame(payload: Mapping[str, Any]) -> bytes:
    """One SSE event carrying a JSON object."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def error_frame(code: str, message: str) -> bytes:
    """An in-band error event, as OpenAI-compatible servers send mid-stream."""
    return frame(envelope(code, message))


class ChunkWriter:
    """Renders the ``chat.completion.chunk`` events of one completion."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        """Pre-render the parts shared by every chunk.

        Args:
            completion_id: ``chatcmpl-…`` id shared by all chunks.
            created: Unix seconds.
            model: model id reported to the client.
        """
        self._head: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        head_json = json.dumps(self._head, separators=(",", ":"))[:-1]
        self._content_prefix = (
            f'data: {head_json},"choices":[{{"index":0,"delta":{{"content":'.encode()
        )
        self._content_suffix = b'},"finish_reason":null}]}\n\n'

    def role(self) -> bytes:
        """The first chunk: the assistant role and empty content."""
        return self._choice({"role": "assistant", "content": ""}, None)

    def content(self, text: str) -> bytes:
        """A content increment."""
        return self._content_prefix + json.dumps(text).encode() + self._content_suffix

    def finish(self, reason: str) -> bytes:
        """The last content chunk: empty delta and the finish reason."""
        return self._choice({}, reason)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The usage chunk, with ``choices: []`` so quickstart code indexing it does not break."""
        return frame(
            {**self._head, "choices": [], "usage": usage_object(prompt_tokens, completion_tokens)}
        )

    def _choice(self, delta: dict[str, Any], reason: str | None) -> bytes:
        return frame(
            {**self._head, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
        )


def usage_object(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class EventStreamResponse(StreamingResponse):
    """A streaming response that sends its headers only with the first event.

    Two things follow: a stall before the first event really is "before the first byte",
    and a :class:`GatewayError` raised before the first event becomes an ordinary JSON error
    response (what the SDKs expect for errors before streaming begins). Starlette's
    disconnect watcher still runs alongside, so a client that goes away cancels the
    event iterator.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        """Wrap an iterator of ready-made SSE events."""
        super().__init__(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def stream_response(self, send: Send) -> None:
        """Send the start message lazily, then every event."""
        started = False
        try:
            async for chunk in self.body_iterator:
                if not started:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": self.status_code,
                            "headers": self.raw_headers,
                        }
                    )
                    started = True
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except GatewayError as exc:
            if started:
                raise
            response = exc.to_response()
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        if not started:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
