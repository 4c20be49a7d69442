"""Mint cost per message over a 100-message conversation, by how the token is obtained.

    python bench/mint_bench.py [--messages 100]

Starts a gateway (``python -m behest_chat.gateway`` on a free port, offline model, no token
pacing, one project trusting an API key and a registered signing key) and sends one
conversation per mode, each message a real chat completion with the token just obtained:

- remote mint: ``client.mint()`` before every message (``POST /v1/auth/mint``);
- local signing: ``client.mint()`` with a ``behest_pk_`` key before every message (RS256 here);
- cached: ``client.token_for()`` (what the app does; one process);
- cached, shared: ``token_for()`` through :class:`SharedTokenCache` in Redis, messages
  alternating between two clients as two workers would (needs Redis at
  ``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/0``; keys under a prefix of its
  own, deleted afterwards).

Reported: mints at the gateway, token cost per message (p50, p95, mean) and the whole
message (p50). Target: at most 1 mint per user per token lifetime. Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay_bench import ROOT, UNLIMITED_ENV, percentile

from behest_chat.behest import BehestClient
from behest_chat.behest.cache import SharedTokenCache
from behest_chat.redis_support import create_redis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ECHO = {"messages": [{"role": "user", "content": "echo: ok"}]}

TokenSource = Callable[[int], Awaitable[str]]


async def conversation(
    http: httpx.AsyncClient, token_for_message: TokenSource, messages: int
) -> tuple[list[float], list[float]]:
    """Send ``messages`` chat completions; returns (token ms, whole message ms) per message."""
    token_ms, message_ms = [], []
    for n in range(messages):
        started = time.perf_counter()
        token = await token_for_message(n)
        obtained = time.perf_counter()
        response = await http.post(
            "/v1/chat/completions", json=ECHO, headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        token_ms.append((obtained - started) * 1000)
        message_ms.append((time.perf_counter() - started) * 1000)
    return token_ms, message_ms


async def bench(messages: int) -> None:
    from tests.fixtures.gateway import start_gateway

    with tempfile.TemporaryDirectory(prefix="behest-bench-") as directory:
        gateway = start_gateway(
            Path(directory),
            {"BEHEST_GATEWAY_TOKEN_DELAY_MS": "0", "BEHEST_GATEWAY_LIMITS": UNLIMITED_ENV},
            faults=True,
        )
        try:
            await run_modes(gateway, messages)
        finally:
            gateway.stop()


async def run_modes(gateway, messages: int) -> None:
    remote = BehestClient(key=gateway.api_key, base_url=gateway.base_url)
    signer = BehestClient(
        key="behest_pk_" + gateway.signing_key_pem, base_url=gateway.base_url,
        kid=gateway.kid, tenant_id=gateway.tenant_id, project_id=gateway.project_id,
    )
    cached = BehestClient(key=gateway.api_key, base_url=gateway.base_url)
    prefix = f"behest_bench_{secrets.token_hex(4)}:"
    redis = create_redis(REDIS_URL)
    workers = [BehestClient(key=gateway.api_key, base_url=gateway.base_url) for _ in range(2)]
    for worker in workers:
        worker.cache = SharedTokenCache(redis, prefix=prefix)

    async def remote_mint(_: int) -> str:
        return (await remote.mint("remote-user", 1)).token

    async def local_sign(_: int) -> str:
        return (await signer.mint("local-user", 1)).token

    async def cached_token(_: int) -> str:
        return (await cached.token_for("cached-user", 1)).token

    async def shared_token(n: int) -> str:
        return (await workers[n % 2].token_for("shared-user", 1)).token

    modes: list[tuple[str, TokenSource]] = [
        ("remote mint", remote_mint),
        ("local signing", local_sign),
        ("cached", cached_token),
        ("cached, shared (2 workers)", shared_token),
    ]
    rows = []
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
            for label, source in modes:
                gateway.reset()
                token_ms, message_ms = await conversation(http, source, messages)
                mints = gateway.stats()["mints"]
                rows.append((label, mints, token_ms, message_ms))
    finally:
        for client in (remote, signer, cached, *workers):
            await client.aclose()
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()

    print(f"\nToken cost per message, one user, {messages} messages (ms)")
    print(f"  {'mode':<28}{'mints':>7}{'token p50':>11}{'token p95':>11}{'token mean':>12}"
          f"{'message p50':>13}")
    for label, mints, token_ms, message_ms in rows:
        print(f"  {label:<28}{mints:>7}{percentile(token_ms, 50):>11.3f}"
              f"{percentile(token_ms, 95):>11.3f}{statistics.fmean(token_ms):>12.3f}"
              f"{percentile(message_ms, 50):>13.2f}")
    worst = max(mints for label, mints, _, _ in rows if label.startswith("cached"))
    print(f"Target: <= 1 mint per user per token lifetime (cached modes): "
          f"{'meets' if worst <= 1 else 'misses'} ({worst})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    os.chdir(ROOT)
    asyncio.run(bench(args.messages))


if __name__ == "__main__":
    main()
