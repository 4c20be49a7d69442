"""Every fault of the gateway's switch, and its real limits, map to the right error.

Each call runs under a short deadline, so a hang fails the test instead of stalling the run.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from behest_chat.behest import BehestClient, errors
from tests.fixtures.gateway import RunningGateway

ECHO = [{"role": "user", "content": "echo: ok"}]
LONG = [{"role": "user", "content": "long: 40"}]
DEADLINE_SECONDS = 5.0


@pytest.fixture
def gw(gateway: RunningGateway) -> RunningGateway:
    gateway.reset()
    return gateway


def make_client(gw: RunningGateway, *, read: float = 10.0, **kwargs: object) -> BehestClient:
    return BehestClient(
        key=gw.api_key,
        base_url=gw.base_url,
        timeout=httpx.Timeout(read, connect=2.0),
        retry_backoff=0.01,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client(gw: RunningGateway) -> AsyncIterator[BehestClient]:
    async with make_client(gw) as client:
        yield client


async def stream_chunks(
    client: BehestClient,
    messages: list[dict] = ECHO,
    received: list[dict] | None = None,
    after_each: Callable[[list[dict]], Awaitable[None]] | None = None,
) -> list[dict]:
    """Stream one answer under the deadline; chunks land in ``received`` as they arrive, and
    ``after_each`` (if given) runs with them before the next chunk is asked for."""
    chunks = received if received is not None else []
    async with asyncio.timeout(DEADLINE_SECONDS):
        stream = await client.chat.completions.create(
            messages=messages, stream=True, user_id="alice", tier=1
        )
        async with stream:
            async for chunk in stream:
                chunks.append(chunk)
                if after_each is not None:
                    await after_each(chunks)
    return chunks


async def test_402_from_the_switch_carries_tier_limit_usage(
    client: BehestClient, gw: RunningGateway
) -> None:
    details = {"tier": "free", "limit": {"tokens_per_day": 50000}, "usage": {"tokens_today": 50123}}
    gw.set_fault(
        status=402, code="quota_exceeded", message="Free tier cap reached", details=details
    )
    with pytest.raises(errors.QuotaExceededError) as caught:
        await stream_chunks(client)
    error = caught.value
    assert (error.status, error.code, error.message) == (
        402,
        "quota_exceeded",
        "Free tier cap reached",
    )
    assert (error.tier, error.limit, error.usage) == (
        "free",
        {"tokens_per_day": 50000},
        {"tokens_today": 50123},
    )
    assert error.trace_id
    assert error.kind == "quota_exceeded"
    assert gw.stats()["chat_requests"] == 1  # never retried


async def test_429_from_the_switch_has_retry_after(
    client: BehestClient, gw: RunningGateway
) -> None:
    gw.set_fault(status=429, retry_after=7)
    with pytest.raises(errors.RateLimitError) as caught:
        await stream_chunks(client)
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (
        429,
        "rate_limited",
        7,
    )
    assert gw.stats()["chat_requests"] == 1


async def test_real_daily_cap_is_a_quota_error(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    limited = gateway_factory(
        {"BEHEST_GATEWAY_LIMITS": json.dumps({"free": {"requests_per_day": 2}})}
    )
    async with make_client(limited) as client:
        await stream_chunks(client)
        await stream_chunks(client)
        with pytest.raises(errors.QuotaExceededError) as caught:
            await stream_chunks(client)
    assert caught.value.tier == "free"
    assert caught.value.limit == {"requests_per_day": 2}
    assert caught.value.usage.get("requests_today", 0) >= 2


async def test_real_rpm_limit_is_a_rate_limit_error(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    limited = gateway_factory({"BEHEST_GATEWAY_LIMITS": json.dumps({"free": {"rpm": 2}})})
    async with make_client(limited) as client:
        await stream_chunks(client)
        await stream_chunks(client)
        with pytest.raises(errors.RateLimitError) as caught:
            await stream_chunks(client)
    assert isinstance(caught.value.retry_after, int)
    assert 1 <= caught.value.retry_after <= 60
    assert limited.stats()["chat_requests"] == 3


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (400, errors.BadRequestError, "validation_error"),
        (422, errors.BadRequestError, "validation_error"),
        (403, errors.PermissionDeniedError, "forbidden"),
        (404, errors.NotFoundError, "not_found"),
        (409, errors.BehestAPIError, "error"),
    ],
)
async def test_4xx_statuses_map_and_are_not_retried(
    client: BehestClient, gw: RunningGateway, status: int, cls: type, code: str
) -> None:
    gw.set_fault(status=status, count=3)
    with pytest.raises(cls) as caught:
        await stream_chunks(client)
    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.code) == (status, code)
    assert gw.stats()["chat_requests"] == 1


async def test_two_5xx_are_retried_then_the_answer_streams(
    client: BehestClient, gw: RunningGateway
) -> None:
    gw.set_fault(status=500, code="server_error", count=2)
    chunks = await stream_chunks(client)
    assert chunks
    assert gw.stats()["chat_requests"] == 3


async def test_three_5xx_give_up_with_server_error(
    client: BehestClient, gw: RunningGateway
) -> None:
    gw.set_fault(status=503, message="provider down", count=3)
    with pytest.raises(errors.ServerError) as caught:
        await stream_chunks(client)
    assert (caught.value.status, caught.value.message) == (503, "provider down")
    assert caught.value.trace_id
    assert gw.stats()["chat_requests"] == 3


async def test_retries_can_be_switched_off(gw: RunningGateway) -> None:
    gw.set_fault(status=502, count=2)
    async with make_client(gw, max_retries=0) as client:
        with pytest.raises(errors.ServerError):
            await stream_chunks(client)
    assert gw.stats()["chat_requests"] == 1


async def test_5xx_on_non_streaming_call_is_retried(
    client: BehestClient, gw: RunningGateway
) -> None:
    gw.set_fault(status=500, count=1)
    async with asyncio.timeout(DEADLINE_SECONDS):
        response = await client.chat.completions.create(messages=ECHO, user_id="alice", tier=1)
    assert response["choices"][0]["message"]["content"] == "ok"
    assert gw.stats()["chat_requests"] == 2


async def test_5xx_on_mint_is_retried(client: BehestClient, gw: RunningGateway) -> None:
    gw.set_fault(path="/v1/auth/mint", status=500, count=2)
    async with asyncio.timeout(DEADLINE_SECONDS):
        token = await client.mint("alice", tier=1)
    assert token.token
    stats = gw.stats()
    assert stats["mints"] == 1
    assert stats["requests_by_path"]["/v1/auth/mint"] == 3


async def test_stall_before_headers_is_a_timeout_and_not_retried(gw: RunningGateway) -> None:
    gw.set_fault(stall_ms=3000)
    async with make_client(gw, read=0.3) as client:
        await client.token_for("alice", 1)
        with pytest.raises(errors.TimeoutError) as caught:
            await stream_chunks(client)
    assert caught.value.kind == "timeout"
    assert gw.stats()["chat_requests"] == 1


async def test_stall_on_mint_is_a_timeout(gw: RunningGateway) -> None:
    gw.set_fault(path="/v1/auth/mint", stall_ms=3000)
    async with make_client(gw, read=0.3) as client:
        with pytest.raises(errors.TimeoutError):
            async with asyncio.timeout(DEADLINE_SECONDS):
                await client.mint("alice", tier=1)


async def test_stall_between_chunks_is_a_timeout(gw: RunningGateway) -> None:
    gw.set_fault(token_delay_ms=3000)
    received: list[dict] = []
    async with make_client(gw, read=0.3) as client:
        with pytest.raises(errors.TimeoutError):
            await stream_chunks(client, LONG, received)
    assert gw.stats()["chat_requests"] == 1


async def test_a_request_timeout_overrides_the_clients(
    client: BehestClient, gw: RunningGateway
) -> None:
    """The client waits 10 s for a read; this request only 0.3 s between chunks."""
    gw.set_fault(token_delay_ms=3000)
    received: list[dict] = []
    with pytest.raises(errors.TimeoutError):
        async with asyncio.timeout(DEADLINE_SECONDS):
            stream = await client.chat.completions.create(
                messages=LONG,
                stream=True,
                user_id="alice",
                tier=1,
                timeout=httpx.Timeout(0.3, connect=2.0),
            )
            async with stream:
                async for chunk in stream:
                    received.append(chunk)
    assert len(received) == 1  # the role chunk came at once; the first token did not


async def test_cut_stream_is_a_stream_cut_and_keeps_what_arrived(
    client: BehestClient, gw: RunningGateway
) -> None:
    gw.set_fault(cut_after=3)
    received: list[dict] = []
    with pytest.raises(errors.StreamCutError) as caught:
        await stream_chunks(client, LONG, received)
    assert len(received) == 3
    assert caught.value.status == 200
    assert caught.value.trace_id
    assert gw.stats()["chat_requests"] == 1  # never retried after the first byte


async def test_a_cut_that_comes_while_the_reader_is_busy_keeps_what_arrived(
    client: BehestClient, gw: RunningGateway
) -> None:
    """The frames before the cut reach the reader even when the cut reaches the client
    before the reader asks for them (the app was busy sending a piece to a page)."""
    gw.set_fault(cut_after=5, token_delay_ms=20)

    async def busy_until_the_cut(chunks: list[dict]) -> None:
        # After the first chunk, the last frames and the end of the connection arrive while
        # the reader waits for the gateway to report the cut (the loop runs meanwhile).
        if len(chunks) == 1:
            async with httpx.AsyncClient() as http:
                while (await http.get(f"{gw.base_url}/_gateway/stats")).json()[
                    "streams_cut"
                ] == 0:
                    pass

    received: list[dict] = []
    with pytest.raises(errors.StreamCutError):
        await stream_chunks(client, LONG, received, after_each=busy_until_the_cut)
    assert len(received) == 5


async def test_malformed_frame(client: BehestClient, gw: RunningGateway) -> None:
    gw.set_fault(malformed_after=2)
    received: list[dict] = []
    with pytest.raises(errors.MalformedFrameError) as caught:
        await stream_chunks(client, LONG, received)
    assert len(received) == 2
    assert caught.value.code == "stream_parse_error"


async def test_in_band_error_event(client: BehestClient, gw: RunningGateway) -> None:
    gw.set_fault(error_event_after=2, code="server_error", message="provider went away")
    received: list[dict] = []
    with pytest.raises(errors.StreamErrorEvent) as caught:
        await stream_chunks(client, LONG, received)
    assert len(received) == 2
    assert (caught.value.code, caught.value.message) == ("server_error", "provider went away")
    assert caught.value.kind == "stream_error_event"


async def test_after_a_fault_the_next_call_works(client: BehestClient, gw: RunningGateway) -> None:
    gw.set_fault(cut_after=1)
    with pytest.raises(errors.StreamCutError):
        await stream_chunks(client, LONG)
    chunks = await stream_chunks(client)
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == "ok"
    )
    assert gw.stats()["streams_open"] == 0


async def test_gateway_that_went_away_is_a_connect_error(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    gone = gateway_factory()
    gone.stop()
    async with make_client(gone) as client:
        async with asyncio.timeout(DEADLINE_SECONDS):
            with pytest.raises(errors.ConnectError) as caught:
                await client.mint("alice", tier=1)
    assert gone.base_url.removeprefix("http://") in caught.value.message
