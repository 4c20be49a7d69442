"""Process-wide services: the Behest client and, by default, the embedded local gateway.

One `BehestClient` per process (its token cache and connection pool are shared by every
tab this worker serves). The embedded gateway runs inside the backend process when
`BEHEST_BASE_URL` is unset, so a fresh checkout chats with no other setup.

Scale-out mode (`REDIS_URL` set, several workers): the token cache is shared through Redis
(one mint per user for all workers), Stop reaches turns running in other workers, and the
gateway is not embedded — every worker would try to bind its port. With `BEHEST_BASE_URL`
unset, `scripts/run` starts `python -m behest_chat.gateway` on `BEHEST_GATEWAY_HOST:PORT`
next to the app, which is where the client looks for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from behest_chat.behest import BehestClient
from behest_chat.behest.cache import SharedTokenCache
from behest_chat.inflight import turns
from behest_chat.redis_support import close_redis, get_redis, redis_prefix
from behest_chat.settings import env_file_path, get_settings

__all__ = ["get_client", "lifespan"]

logger = logging.getLogger("behest_chat")
_client: BehestClient | None = None
# How long shutdown waits for the running turns to store their partial answers.
_TURNS_END_TIMEOUT_S = 5.0


def get_client() -> BehestClient:
    """The process's Behest client, created on first use from the settings."""
    global _client
    if _client is None:
        settings = get_settings()
        client = BehestClient(**settings.client_kwargs(), default_ttl=settings.token_ttl)
        redis = get_redis()
        if redis is not None:
            client.cache = SharedTokenCache(redis, prefix=redis_prefix())
        _client = client
    return _client


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """App lifespan: the local gateway (single-process mode), Redis sharing, client close."""
    global _client
    settings = get_settings()
    async with contextlib.AsyncExitStack() as stack:
        redis = get_redis()
        if redis is not None:
            stack.push_async_callback(close_redis)
            await stack.enter_async_context(turns.shared_through(redis, redis_prefix()))
            if settings.uses_embedded_gateway:
                logger.info(
                    "scale-out mode: expecting the gateway process at %s",
                    settings.effective_base_url,
                )
        elif settings.uses_embedded_gateway:
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
            await turns.end_all_here(_TURNS_END_TIMEOUT_S)
            if _client is not None:
                await _client.aclose()
                _client = None
