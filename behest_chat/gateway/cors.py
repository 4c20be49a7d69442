"""CORS with a per-project allowlist (contract §7), as ASGI middleware.

- The origin must equal an allowlist entry exactly (scheme, host and port).
- Allowed preflight (``OPTIONS`` with ``Access-Control-Request-Method``): 204 echoing the
  origin, ``Vary: Origin``, methods ``GET, POST, DELETE, OPTIONS``, the requested headers
  reflected, ``Access-Control-Max-Age: 600``.
- Allowed actual request: the response gets the echoed origin, ``Vary: Origin`` and
  ``Access-Control-Expose-Headers: X-Trace-Id, Retry-After``.
- Disallowed origin: no CORS headers at all, so the browser blocks the call; a preflight
  from it is answered 403 ``forbidden`` without reaching a route.
- No ``Origin``: nothing added; ``OPTIONS`` without a preflight is answered 204 with
  ``Allow``.

Credentials are not allowed: browsers send the per-user token in ``Authorization``, so
cookies are never needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from behest_chat.gateway.errors import envelope

__all__ = ["CORSMiddleware"]

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
EXPOSE_HEADERS = "X-Trace-Id, Retry-After"
MAX_AGE = "600"
# Header names are RFC 9110 tokens; anything else in the request list is not reflected.
_HEADER_LIST = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$")


class CORSMiddleware:
    """Adds CORS headers for allowed origins and answers preflights."""

    def __init__(self, app: ASGIApp, origins_for_host: Callable[[str], Sequence[str]]) -> None:
        """Wrap ``app``.

        Args:
            app: the next ASGI app.
            origins_for_host: the allowlist of the project a Host header selects.
        """
        self.app = app
        self.origins_for_host = origins_for_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        method = scope["method"]
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        allowed = origin is not None and origin.lower() in self.origins_for_host(
            headers.get("host", "")
        )

        if method == "OPTIONS":
            await self._options(send, origin if allowed else None, preflight, headers)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = origin or ""
                response_headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _options(
        self, send: Send, origin: str | None, preflight: bool, headers: Headers
    ) -> None:
        if preflight and origin is None:
            body = json.dumps(
                envelope("forbidden", "origin is not allowed for this project")
            ).encode()
            await _respond(send, 403, [(b"content-type", b"application/json")], body)
            return
        if not preflight:
            await _respond(send, 204, [(b"allow", ALLOW_METHODS.encode())])
            return
        response_headers = [
            (b"access-control-allow-origin", (origin or "").encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-max-age", MAX_AGE.encode()),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
            (b"vary", b"Origin, Access-Control-Request-Headers"),
        ]
        requested = headers.get("access-control-request-headers", "").strip()
        if requested and _HEADER_LIST.match(requested):
            response_headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
        await _respond(send, 204, response_headers)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
