"""``ChatStream.read_pause``: the answer gathers in the socket between reads, and nothing is
lost or timed out for it (the gateway paces its tokens like a model)."""

import asyncio
import itertools
import time

import httpx
import pytest

from behest_chat.behest import BehestClient, errors
from tests.fixtures.gateway import RunningGateway

TOKENS = 30
LONG = [{"role": "user", "content": f"long: {TOKENS}"}]
DEADLINE_SECONDS = 10.0


@pytest.fixture
def gw(gateway: RunningGateway) -> RunningGateway:
    gateway.reset()
    return gateway


def make_client(gw: RunningGateway, *, read: float = 10.0) -> BehestClient:
    return BehestClient(
        key=gw.api_key, base_url=gw.base_url, timeout=httpx.Timeout(read, connect=2.0)
    )


async def read_answer(
    client: BehestClient, gw: RunningGateway, pause: float, token_delay_ms: int = 20
) -> tuple[str, list[float]]:
    """The answer's text, and when each of its pieces reached the reader."""
    gw.set_fault(token_delay_ms=token_delay_ms)  # for this request only
    text, arrivals = "", []
    async with asyncio.timeout(DEADLINE_SECONDS):
        stream = await client.chat.completions.create(
            messages=LONG, stream=True, user_id="alice", tier=1
        )
        stream.read_pause = pause
        async with stream:
            async for chunk in stream:
                piece = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else ""
                if piece:
                    text += piece
                    arrivals.append(time.monotonic())
        assert stream.done
    return text, arrivals


def bursts(arrivals: list[float]) -> int:
    """Pieces that reached the reader together (less than 10 ms apart) count once."""
    return 1 + sum(1 for a, b in itertools.pairwise(arrivals) if b - a > 0.01)


async def test_held_reads_take_the_tokens_in_batches_and_lose_none(gw: RunningGateway) -> None:
    async with make_client(gw) as client:
        each, each_arrivals = await read_answer(client, gw, 0)
        held, held_arrivals = await read_answer(client, gw, 0.2)
    assert held == each and len(held_arrivals) == len(each_arrivals) >= TOKENS
    # 30 tokens 20 ms apart: one read each, or one read per 0.2 s (0.6 s in all).
    assert bursts(each_arrivals) >= TOKENS // 2
    assert bursts(held_arrivals) <= 6


async def test_a_hold_longer_than_the_read_timeout_is_no_timeout(gw: RunningGateway) -> None:
    async with make_client(gw) as client:
        whole, _ = await read_answer(client, gw, 0)
    async with make_client(gw, read=0.15) as client:
        held, _ = await read_answer(client, gw, 0.4)
    assert held == whole


async def test_a_stall_between_held_reads_is_still_a_timeout(gw: RunningGateway) -> None:
    async with make_client(gw, read=0.3) as client:
        with pytest.raises(errors.TimeoutError):
            await read_answer(client, gw, 0.1, token_delay_ms=3000)


async def test_a_stream_cut_while_reads_are_held_keeps_what_arrived(gw: RunningGateway) -> None:
    gw.set_fault(cut_after=5, token_delay_ms=20)
    received: list[dict] = []
    async with make_client(gw) as client:
        with pytest.raises(errors.StreamCutError):
            async with asyncio.timeout(DEADLINE_SECONDS):
                stream = await client.chat.completions.create(
                    messages=LONG, stream=True, user_id="alice", tier=1
                )
                stream.read_pause = 0.2  # the cut comes while reading is paused
                async with stream:
                    async for chunk in stream:
                        received.append(chunk)
        assert len(received) == 5
        text, _ = await read_answer(client, gw, 0.1)  # the client reads the next answer
    assert text
