"""Leaving or cancelling a stream closes it on the gateway within a second."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from behest_chat.behest import BehestClient, ChatStream
from tests.fixtures.gateway import RunningGateway

# At the suite's 1 ms pacing this answer takes minutes; only closing it can end it early.
ENDLESS = [{"role": "user", "content": "long: 200000"}]
CLOSE_DEADLINE_SECONDS = 1.0


@pytest.fixture
def gw(gateway: RunningGateway) -> RunningGateway:
    gateway.reset()
    return gateway


@pytest.fixture
async def client(gw: RunningGateway) -> AsyncIterator[BehestClient]:
    async with BehestClient(
        key=gw.api_key, base_url=gw.base_url, timeout=httpx.Timeout(10.0, connect=2.0)
    ) as client:
        yield client


async def poll_stats(
    gw: RunningGateway, predicate: Callable[[dict[str, Any]], bool], deadline: float
) -> float:
    """Seconds until the gateway's stats satisfy ``predicate``; fails after ``deadline``."""
    started = time.monotonic()
    while True:
        stats = await asyncio.to_thread(gw.stats)
        elapsed = time.monotonic() - started
        if predicate(stats):
            return elapsed
        assert elapsed < deadline, f"gateway still shows {stats['streams_open']} open stream(s)"
        await asyncio.sleep(0.02)


def stream_closed(stats: dict[str, Any]) -> bool:
    return stats["streams_open"] == 0 and stats["client_disconnects"] == 1


async def open_stream(client: BehestClient, gw: RunningGateway) -> ChatStream:
    stream = await client.chat.completions.create(
        messages=ENDLESS, stream=True, user_id="alice", tier=1
    )
    first = await anext(stream)
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert (await asyncio.to_thread(gw.stats))["streams_open"] == 1
    return stream


async def test_aclose_after_break_closes_the_gateway_stream(
    client: BehestClient, gw: RunningGateway
) -> None:
    stream = await open_stream(client, gw)
    count = 0
    async for _ in stream:
        count += 1
        if count == 5:
            break
    await stream.aclose()
    assert stream.closed and not stream.done
    await poll_stats(gw, stream_closed, CLOSE_DEADLINE_SECONDS)


async def test_break_alone_closes_the_gateway_stream(
    client: BehestClient, gw: RunningGateway
) -> None:
    stream = await open_stream(client, gw)
    async for _ in stream:
        break
    # No aclose(), no async with: leaving the loop is enough.
    await poll_stats(gw, stream_closed, CLOSE_DEADLINE_SECONDS)
    assert stream.closed


async def test_leaving_async_with_closes_the_gateway_stream(
    client: BehestClient, gw: RunningGateway
) -> None:
    stream = await open_stream(client, gw)
    async with stream:
        async for _ in stream:
            break
    assert stream.closed
    await poll_stats(gw, stream_closed, CLOSE_DEADLINE_SECONDS)


async def test_cancelling_the_consuming_task_closes_the_gateway_stream(
    client: BehestClient, gw: RunningGateway
) -> None:
    streaming = asyncio.Event()
    holder: list[ChatStream] = []

    async def consume() -> None:
        stream = await client.chat.completions.create(
            messages=ENDLESS, stream=True, user_id="alice", tier=1
        )
        holder.append(stream)
        async for _ in stream:
            streaming.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(streaming.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert holder[0].closed
    await poll_stats(gw, stream_closed, CLOSE_DEADLINE_SECONDS)


async def test_cancelling_while_waiting_for_headers_reaches_the_gateway(
    client: BehestClient, gw: RunningGateway
) -> None:
    await client.token_for("alice", 1)
    gw.set_fault(stall_ms=30_000)
    task = asyncio.create_task(
        client.chat.completions.create(messages=ENDLESS, stream=True, user_id="alice", tier=1)
    )
    await poll_stats(gw, lambda s: s["chat_requests"] == 1, 5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await poll_stats(gw, lambda s: s["client_disconnects"] == 1, CLOSE_DEADLINE_SECONDS)


async def test_cancelling_a_non_streaming_call_reaches_the_gateway(
    client: BehestClient, gw: RunningGateway
) -> None:
    await client.token_for("alice", 1)
    gw.set_fault(stall_ms=30_000)
    task = asyncio.create_task(
        client.chat.completions.create(messages=ENDLESS, stream=False, user_id="alice", tier=1)
    )
    await poll_stats(gw, lambda s: s["chat_requests"] == 1, 5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await poll_stats(gw, lambda s: s["client_disconnects"] == 1, CLOSE_DEADLINE_SECONDS)


async def test_a_closed_stream_stops_iterating(client: BehestClient, gw: RunningGateway) -> None:
    stream = await open_stream(client, gw)
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert [chunk async for chunk in stream] == []
