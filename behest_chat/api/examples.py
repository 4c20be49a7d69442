"""The browser-direct example page and the gateway probe the settings page's check uses.

- ``GET /examples/browser-direct``: ``examples/browser_direct.html`` with the gateway URL
  for browsers (``BEHEST_PUBLIC_BASE_URL``) filled in. Served by the app itself, so the
  page's ``fetch("/api/behest/token", {credentials: "include"})`` carries the session
  cookie. Its Content-Security-Policy lets the page's own script talk only to this app and
  to the gateway.
- ``GET /api/behest/gateway-status``: signed-in users only; ``{"reachable": bool, "via":
  "public" | "server" | null}``. The app's server asks ``{BEHEST_PUBLIC_BASE_URL}/v1/models``
  (and, failing that, the URL the server itself uses); any HTTP answer, even 401, means the
  gateway is up. Browsers report a CORS refusal exactly like a network failure; when the
  browser cannot reach the gateway at all, ``checkOrigin`` in ``assets/direct.js`` asks
  this to tell "gateway down" from "the URL for browsers is wrong".
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from behest_chat.api.http import ALL_METHODS, guarded, json_error, signed_in_user
from behest_chat.origins import normalize_origin
from behest_chat.settings import Settings

__all__ = [
    "BROWSER_DIRECT_PATH",
    "EXAMPLE_FILE",
    "GATEWAY_STATUS_PATH",
    "example_routes",
    "render_example",
]

BROWSER_DIRECT_PATH = "/examples/browser-direct"
GATEWAY_STATUS_PATH = "/api/behest/gateway-status"
EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "examples" / "browser_direct.html"
_BASE_URL_PLACEHOLDER = "{{BEHEST_PUBLIC_BASE_URL}}"
_PROBE_TIMEOUT_S = 3.0
_NO_SOURCE = "'none'"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def example_routes(settings: Settings) -> list[Route]:
    """The routes of this module, for ``create_api``.

    Args:
        settings: the gateway URLs and the app's origins.
    """
    return [
        Route(
            BROWSER_DIRECT_PATH,
            guarded(
                _example_handler(settings),
                methods=["GET", "HEAD"],
                app_origins=settings.app_origins,
                with_ok=False,
            ),
            methods=ALL_METHODS,
        ),
        Route(
            GATEWAY_STATUS_PATH,
            guarded(
                _gateway_status_handler(settings),
                methods=["GET"],
                app_origins=settings.app_origins,
                with_ok=False,
            ),
            methods=ALL_METHODS,
        ),
    ]


def render_example(template: str, public_base_url: str) -> tuple[str, str]:
    """Fill the gateway URL into the example page and build its Content-Security-Policy.

    Args:
        template: the page as stored, with ``{{BEHEST_PUBLIC_BASE_URL}}`` placeholders.
        public_base_url: the gateway URL as browsers reach it.

    Returns:
        The page and its ``Content-Security-Policy`` value: scripts only by their hash,
        connections only to this app and the gateway's origin.
    """
    page = template.replace(_BASE_URL_PLACEHOLDER, html.escape(public_base_url, quote=True))
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(page)
    )
    policy = (
        "default-src 'none'; "
        f"script-src {hashes or _NO_SOURCE}; "
        "style-src 'unsafe-inline'; "
        f"connect-src 'self' {normalize_origin(public_base_url)}; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return page, policy


def _example_handler(settings: Settings):
    async def browser_direct_example(request: Request) -> Response:
        try:
            template = await run_in_threadpool(EXAMPLE_FILE.read_text, encoding="utf-8")
        except FileNotFoundError:
            return json_error(404, "the example page is not installed", with_ok=False)
        page, policy = render_example(template, settings.behest_public_base_url)
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": policy,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    return browser_direct_example


def _gateway_status_handler(settings: Settings):
    candidates = [("public", settings.behest_public_base_url)]
    if settings.effective_base_url != settings.behest_public_base_url:
        candidates.append(("server", settings.effective_base_url))

    async def gateway_status(request: Request) -> Response:
        await signed_in_user(request)  # signed-in users only
        async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT_S) as client:
            for via, base_url in candidates:
                try:
                    await client.get(f"{base_url}/v1/models")
                except httpx.HTTPError:
                    continue
                return JSONResponse({"reachable": True, "via": via})
        return JSONResponse({"reachable": False, "via": None})

    return gateway_status
