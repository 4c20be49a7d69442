"""Throughput and latency of the local gateway's offline model (prints figures; not a test).

    python bench/gateway_bench.py [--tokens 200000] [--requests 30]

Measures, with token pacing off (``BEHEST_GATEWAY_TOKEN_DELAY_MS=0``):

1. the offline model alone: SSE content chunks rendered per second in this process;
2. end to end over HTTP: chunks per second of one long streamed answer, with the gateway
   process pinned to one CPU core (the reading client runs on another core when there is one);
3. time to first chunk: from sending a chat request (token already minted) to receiving the
   first ``data:`` event, for ordinary prompts; median and 95th percentile.

Target: at least 5,000 chunks/s end to end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from behest_chat.gateway.offline import OfflineModel  # noqa: E402
from behest_chat.gateway.streaming import ChunkWriter  # noqa: E402

TARGET_CHUNKS_PER_SECOND = 5_000


def model_only(tokens: int) -> float:
    """Content chunks per second produced by the offline model and the chunk writer."""
    writer = ChunkWriter("chatcmpl-bench", int(time.time()), "behest-offline")
    messages = [{"role": "user", "content": f"long: {tokens}"}]
    started = time.perf_counter()
    size = 0
    for token in OfflineModel().answer(messages):
        size += len(writer.content(token))
    elapsed = time.perf_counter() - started
    assert size > 0
    return tokens / elapsed


def start_gateway(api_key: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m behest_chat.gateway`` on a free port, pinned to CPU 0 if possible."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEHEST_")}
    limits = '{"free": {"rpm": 100000, "requests_per_day": 1000000, "tokens_per_day": 1000000000}}'
    env.update(
        BEHEST_KEY=api_key,
        BEHEST_GATEWAY_TOKEN_DELAY_MS="0",
        BEHEST_GATEWAY_LIMITS=limits,
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "behest_chat.gateway", "--port", "0", "--env-file", os.devnull],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on " not in line:
        process.kill()
        raise SystemExit("gateway did not start")
    base_url = line.split("listening on ", 1)[1].split()[0]
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(process.pid, {cpus[0]})
        if len(cpus) > 1:
            os.sched_setaffinity(0, set(cpus[1:]))
    return process, base_url


def end_to_end(client: httpx.Client, token: str, tokens: int) -> tuple[float, int]:
    """Chunks per second of one long streamed answer, read as raw bytes."""
    body = {"messages": [{"role": "user", "content": f"long: {tokens}"}], "stream": True}
    frames = 0
    started = time.perf_counter()
    with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        response.raise_for_status()
        tail = b""
        for piece in response.iter_raw():
            data = tail + piece
            frames += data.count(b"\n\n")
            tail = data[data.rfind(b"\n\n") + 2 :] if b"\n\n" in data else data
    elapsed = time.perf_counter() - started
    return frames / elapsed, frames


def first_chunk_latencies(client: httpx.Client, token: str, requests: int) -> list[float]:
    """Seconds from sending a request to the first SSE event, per request."""
    latencies = []
    for index in range(requests):
        body = {
            "messages": [{"role": "user", "content": f"Question {index} about streaming?"}],
            "stream": True,
        }
        started = time.perf_counter()
        with client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            first: float | None = None
            for piece in response.iter_raw():
                if first is None and b"\n\n" in piece:
                    first = time.perf_counter() - started
            assert first is not None
            latencies.append(first)
    return latencies


def main() -> int:
    """Run all measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000, help="tokens in the long answer")
    parser.add_argument("--requests", type=int, default=30, help="requests for time to first chunk")
    args = parser.parse_args()

    print(f"offline model alone:      {model_only(args.tokens):>12,.0f} chunks/s")

    api_key = "behest_sk_live_" + secrets.token_hex(16)
    process, base_url = start_gateway(api_key)
    try:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            minted = client.post(
                "/v1/auth/mint",
                json={"user_id": "bench"},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            token = minted.json()["jwt"]
            end_to_end(client, token, 2_000)  # warm-up
            rate, frames = end_to_end(client, token, args.tokens)
            latencies = first_chunk_latencies(client, token, args.requests)
    finally:
        process.terminate()
        process.wait(timeout=10)

    verdict = "meets" if rate >= TARGET_CHUNKS_PER_SECOND else "MISSES"
    print(
        f"end to end over HTTP:     {rate:>12,.0f} chunks/s ({frames:,} frames, gateway on 1 core)"
    )
    print(f"target {TARGET_CHUNKS_PER_SECOND:,} chunks/s:    {verdict}")
    p95 = statistics.quantiles(latencies, n=20)[18] if len(latencies) >= 20 else max(latencies)
    print(
        f"time to first chunk:      median {statistics.median(latencies) * 1000:.2f} ms, "
        f"p95 {p95 * 1000:.2f} ms over {len(latencies)} requests"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
