"""Trace ids and the one-line request log, as ASGI middleware.

Every HTTP response gets ``X-Trace-Id`` (a fresh ``tr_…`` id; a client-sent one is ignored
so nobody can plant ids in the log). One line is logged per request when it ends::

    POST /v1/chat/completions 200 trace=tr_3f… uid=alice 812.4ms

The line has the method, path (no query string), status (``cut`` for a deliberately
dropped stream, ``-`` when the client left before any response, ``200/disconnected`` and
the like when a stream ended early), trace id, the token's uid (``-`` before
authentication) and duration. Headers and bodies are never logged, so keys and
tokens cannot reach the log.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from behest_chat.gateway.errors import envelope
from behest_chat.gateway.faults import StreamCutError

__all__ = ["RequestLogMiddleware", "logger"]

logger = logging.getLogger("behest_chat.gateway")


class RequestLogMiddleware:
    """Adds ``X-Trace-Id`` and logs one line per request."""

    def __init__(
        self, app: ASGIApp, on_response: Callable[[str, int | None], None] | None = None
    ) -> None:
        """Wrap ``app``.

        Args:
            app: the next ASGI app.
            on_response: called with (path, status or None) when a request ends.
        """
        self.app = app
        self.on_response = on_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = "tr_" + uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["trace_id"] = trace_id
        status: int | None = None
        outcome = ""
        started = time.perf_counter()

        async def send_with_trace(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *[(k, v) for k, v in message["headers"] if k.lower() != b"x-trace-id"],
                    (b"x-trace-id", trace_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        except StreamCutError:
            outcome = "cut"
            raise
        except Exception:
            if status is None:
                # Answer with the envelope and trace id before the server logs the error.
                body = json.dumps(
                    envelope("server_error", "internal error; quote the trace id")
                ).encode()
                await send_with_trace(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_trace({"type": "http.response.body", "body": body})
            raise
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            shown = outcome or (str(status) if status is not None else "-")
            stream_outcome = state.get("stream_outcome")
            if not outcome and stream_outcome not in (None, "completed"):
                shown += f"/{stream_outcome}"
            logger.info(
                "%s %s %s trace=%s uid=%s %.1fms",
                scope["method"],
                _printable(scope["path"]),
                shown,
                trace_id,
                _printable(str(state.get("uid", "-"))),
                elapsed_ms,
            )
            if self.on_response is not None:
                self.on_response(scope["path"], status)


def _printable(text: str, limit: int = 200) -> str:
    """Keep log lines on one line whatever a client sends."""
    return "".join(c if c.isprintable() and c != " " else "?" for c in text[:limit])
