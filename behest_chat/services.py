"""Process-wide services: the Behest client and, by default, the embedded local gateway.

One `BehestClient` per process (its token cache and connection pool are shared by every
tab this worker serves). The embedded gateway runs inside the backend process when
`BEHEST_BASE_URL` is unset, so a fresh checkout chats with no other setup.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from behest_chat.behest import BehestClient
from behest_chat.settings import env_file_path, get_settings

__all__ = ["get_client", "lifespan"]

logger = logging.getLogger("behest_chat")
_client: BehestClient | None = None


def get_client() -> BehestClient:
    """The process's Behest client, created on first use from the settings."""
    global _client
    if _client is None:
        _client = BehestClient(**get_settings().client_kwargs())
    return _client


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """App lifespan: run the local gateway here unless BEHEST_BASE_URL is set; close the client."""
    global _client
    settings = get_settings()
    async with contextlib.AsyncExitStack() as stack:
        if settings.uses_embedded_gateway:
            from behest_chat.gateway.config import GatewayConfig, load_environ
            from behest_chat.gateway.embedded import serve

            config = GatewayConfig.from_env(load_environ(env_file_path()))
            await stack.enter_async_context(
                serve(config, host=settings.gateway_host, port=settings.gateway_port)
            )
            logger.info("local Behest gateway listening on %s", settings.effective_base_url)
        try:
            yield
        finally:
            if _client is not None:
                await _client.aclose()
                _client = None
