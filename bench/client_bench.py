"""Client benchmark: prints figures, asserts nothing.

    python bench/client_bench.py [--tokens 20000] [--runs 7] [--streams 200]

Starts a local gateway (``python -m behest_chat.gateway`` on a free port, offline model, no
token pacing, limits out of the way) and measures, in one run:

- local-sign mints per second (RS256 in-process, no network);
- remote mints per second (``POST /v1/auth/mint``), one at a time and 16 at a time;
- the cost of a token-cache hit (``await client.token_for(...)``);
- one long streamed answer read through ``client.chat.completions.create`` and by a bare
  httpx loop (``aiter_lines`` + ``json.loads``) with the same token: time to first chunk,
  chunks per second, and CPU time per chunk in this process. Runs alternate between the two
  readers; medians are reported;
- ``--streams`` answers read at once (100 tokens each, paced at 20 ms as a model would, from
  a second gateway): CPU per chunk in this process, through the client (aiohttp under
  httpx), through the client reading every 50 ms (``read_pause``, as the app does with many
  answers streaming) and by the bare httpx loop on httpx's own transport, in alternating
  rounds.

Targets: a cache hit under 20 µs; the client's wall time within 10 % of the bare read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from behest_chat.behest import BehestClient  # noqa: E402 - after the path fix above
from behest_chat.behest.keys import generate_signing_key_pem  # noqa: E402

CACHE_HIT_TARGET_US = 20.0
OVERHEAD_TARGET = 0.10
UNLIMITED = {"rpm": 10**9, "requests_per_day": 10**9, "tokens_per_day": 10**15}
TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# "client, held": reads every 50 ms (ChatStream.read_pause), as the app does under load.
HELD_READ_PAUSE_S = 0.05


@dataclass
class StreamRun:
    """One read of the long answer."""

    ttfc: float
    chunks: int
    wall: float
    cpu: float

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.wall

    @property
    def cpu_us_per_chunk(self) -> float:
        return self.cpu / self.chunks * 1e6


@contextmanager
def local_gateway(api_key: str, token_delay_ms: int = 0) -> Iterator[str]:
    """Run the gateway in a subprocess (tokens paced at ``token_delay_ms``); yield its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEHEST_")}
    env.update(
        BEHEST_KEY=api_key,
        BEHEST_GATEWAY_TOKEN_DELAY_MS=str(token_delay_ms),
        BEHEST_GATEWAY_LIMITS=json.dumps({tier: UNLIMITED for tier in ("free", "pro", "max")}),
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "behest_chat.gateway",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--env-file",
            os.devnull,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on " not in line:
            raise SystemExit(f"gateway did not start: {line.strip() or 'no output'}")
        yield line.split("listening on ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(timeout=10)


async def rate(label: str, count: int, call: Callable[[], Awaitable[object]]) -> float:
    """Run ``call`` ``count`` times one after another; print and return calls per second."""
    started = time.perf_counter()
    for _ in range(count):
        await call()
    per_second = count / (time.perf_counter() - started)
    print(f"  {label:<44} {per_second:>10,.0f} /s")
    return per_second


async def concurrent_rate(
    label: str, count: int, width: int, call: Callable[[], Awaitable[object]]
) -> None:
    """Run ``count`` calls, ``width`` at a time; print calls per second."""
    semaphore = asyncio.Semaphore(width)

    async def one() -> None:
        async with semaphore:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    print(f"  {label:<44} {count / (time.perf_counter() - started):>10,.0f} /s")


async def bench_mints(base_url: str, api_key: str) -> None:
    print("Mints")
    pem = generate_signing_key_pem()
    async with BehestClient(
        key="behest_pk_" + pem,
        base_url=base_url,
        kid="kid_bench",
        tenant_id="tnt_bench",
        project_id="proj_bench",
    ) as signer:
        await rate("local sign (RS256, no network)", 500, lambda: signer.mint("bench-user", 1))
    async with BehestClient(key=api_key, base_url=base_url, timeout=TIMEOUT) as remote:
        await remote.mint("warm-up", 1)
        await rate("remote mint, sequential", 300, lambda: remote.mint("bench-user", 1))
        await concurrent_rate(
            "remote mint, 16 concurrent", 600, 16, lambda: remote.mint("bench-user", 1)
        )


async def bench_cache_hit(base_url: str, api_key: str) -> float:
    print("Token cache")
    async with BehestClient(key=api_key, base_url=base_url, timeout=TIMEOUT) as client:
        await client.token_for("alice", 1)
        rounds = 100_000
        started = time.perf_counter()
        for _ in range(rounds):
            await client.token_for("alice", 1)
        hit_us = (time.perf_counter() - started) / rounds * 1e6
        started = time.perf_counter()
        for _ in range(rounds):
            client.cache.get("alice", 1)
        raw_us = (time.perf_counter() - started) / rounds * 1e6
    verdict = "ok" if hit_us < CACHE_HIT_TARGET_US else "OVER TARGET"
    print(
        f"  {'await client.token_for() hit':<44} {hit_us:>10.2f} µs  "
        f"(target < {CACHE_HIT_TARGET_US:.0f} µs: {verdict})"
    )
    print(f"  {'TokenCache.get() alone':<44} {raw_us:>10.2f} µs")
    return hit_us


async def read_through_client(
    client: BehestClient, body: dict, user_id: str = "alice", pause: float = 0.0
) -> StreamRun:
    cpu0, started = time.process_time(), time.perf_counter()
    ttfc = 0.0
    chunks = 0
    stream = await client.chat.completions.create(
        messages=body["messages"], stream=True, user_id=user_id, tier=1
    )
    stream.read_pause = pause
    async with stream:
        async for chunk in stream:
            if chunks == 0:
                ttfc = time.perf_counter() - started
            chunks += 1
            chunk["choices"]  # touch the parsed chunk like a consumer would
    return StreamRun(ttfc, chunks, time.perf_counter() - started, time.process_time() - cpu0)


async def read_bare(http: httpx.AsyncClient, url: str, token: str, body: dict) -> StreamRun:
    cpu0, started = time.process_time(), time.perf_counter()
    ttfc = 0.0
    chunks = 0
    headers = {"Authorization": f"Bearer {token}", "X-Session-Id": "bench-bare"}
    async with http.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            if chunks == 0:
                ttfc = time.perf_counter() - started
            chunks += 1
            json.loads(data)["choices"]
    return StreamRun(ttfc, chunks, time.perf_counter() - started, time.process_time() - cpu0)


def summarise(label: str, runs: list[StreamRun]) -> tuple[float, float]:
    wall = statistics.median(r.wall for r in runs)
    cpu = statistics.median(r.cpu_us_per_chunk for r in runs)
    print(
        f"  {label:<14} chunks {runs[0].chunks:>7,}  "
        f"ttfc {statistics.median(r.ttfc for r in runs) * 1000:>6.1f} ms  "
        f"{statistics.median(r.chunks_per_second for r in runs):>9,.0f} chunks/s  "
        f"wall {wall:>6.3f} s  cpu {cpu:>5.1f} µs/chunk"
    )
    return wall, cpu


async def bench_stream(base_url: str, api_key: str, tokens: int, runs: int) -> float:
    print(f"Streaming one answer of {tokens:,} tokens ({runs} runs each, medians)")
    body = {"messages": [{"role": "user", "content": f"long: {tokens}"}], "stream": True}
    async with (
        BehestClient(key=api_key, base_url=base_url, timeout=TIMEOUT) as client,
        httpx.AsyncClient(timeout=TIMEOUT) as http,
    ):
        token = (await client.token_for("alice", 1)).token
        url = base_url + "/v1/chat/completions"
        await read_bare(http, url, token, body)  # warm both connection pools
        await read_through_client(client, body)
        through_client: list[StreamRun] = []
        bare: list[StreamRun] = []
        for _ in range(runs):
            through_client.append(await read_through_client(client, body))
            bare.append(await read_bare(http, url, token, body))
    client_wall, client_cpu = summarise("client", through_client)
    bare_wall, bare_cpu = summarise("bare httpx", bare)
    overhead = client_wall / bare_wall - 1
    verdict = "ok" if overhead <= OVERHEAD_TARGET else "OVER TARGET"
    print(
        f"  client wall-time overhead vs bare read: {overhead * 100:+.1f} % "
        f"(target ≤ {OVERHEAD_TARGET * 100:.0f} %: {verdict})"
    )
    print(f"  client CPU per chunk vs bare read:      {(client_cpu / bare_cpu - 1) * 100:+.1f} %")
    return overhead


async def bench_many_streams(base_url: str, api_key: str, streams: int, rounds: int = 3) -> None:
    print(f"{streams} answers at once (100 tokens at 20 ms each; {rounds} rounds each, medians)")
    body = {"messages": [{"role": "user", "content": "long: 100"}], "stream": True}
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=20)
    async with (
        BehestClient(key=api_key, base_url=base_url, timeout=TIMEOUT) as client,
        httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as http,
    ):
        tokens = [(await client.token_for(f"user{i}", 1)).token for i in range(streams)]
        url = base_url + "/v1/chat/completions"

        async def through_client(pause: float = 0.0) -> list[StreamRun]:
            return await asyncio.gather(
                *(read_through_client(client, body, f"user{i}", pause) for i in range(streams))
            )

        async def held() -> list[StreamRun]:
            return await through_client(HELD_READ_PAUSE_S)

        async def bare() -> list[StreamRun]:
            return await asyncio.gather(*(read_bare(http, url, t, body) for t in tokens))

        readers = (("client", through_client), ("client, held", held), ("bare httpx", bare))
        figures: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in readers}
        for round_ in range(rounds + 1):  # the first round of each warms its pool
            for label, read in readers:
                cpu0, started = time.process_time(), time.perf_counter()
                runs = await read()
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - started
                if round_:
                    chunks = sum(r.chunks for r in runs)
                    figures[label].append((wall, cpu / chunks * 1e6))
    for label, pairs in figures.items():
        print(
            f"  {label:<14} wall {statistics.median(w for w, _ in pairs):>6.2f} s  "
            f"cpu {statistics.median(c for _, c in pairs):>5.1f} µs/chunk"
        )


async def main_async(tokens: int, runs: int, streams: int) -> None:
    api_key = "behest_sk_live_" + secrets.token_hex(16)
    with local_gateway(api_key) as base_url:
        print(f"Gateway: {base_url} (offline model, no pacing)\n")
        await bench_mints(base_url, api_key)
        print()
        await bench_cache_hit(base_url, api_key)
        print()
        await bench_stream(base_url, api_key, tokens, runs)
    with local_gateway(api_key, token_delay_ms=20) as base_url:
        print()
        await bench_many_streams(base_url, api_key, streams)


def main() -> None:
    """Parse arguments and run every measurement once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000, help="tokens in the long answer")
    parser.add_argument("--runs", type=int, default=7, help="reads per reader")
    parser.add_argument("--streams", type=int, default=200, help="answers read at once")
    args = parser.parse_args()
    asyncio.run(main_async(args.tokens, args.runs, args.streams))


if __name__ == "__main__":
    main()
