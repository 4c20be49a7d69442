"""Connection reuse over real TCP: a counting forwarder sits between the client and the gateway."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from behest_chat.behest import BehestClient
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.tcp import LoopbackServer

LONG = [{"role": "user", "content": "long: 20"}]


class CountingForwarder(LoopbackServer):
    """Accepts TCP connections and pipes each to the gateway, counting them."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__()
        self.target = (target_host, target_port)
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


@pytest.fixture
async def forwarder(gateway: RunningGateway) -> AsyncIterator[CountingForwarder]:
    gateway.reset()
    host, port = gateway.base_url.removeprefix("http://").rsplit(":", 1)
    proxy = CountingForwarder(host, int(port))
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_streamed_answers_in_a_row_share_one_connection(
    gateway: RunningGateway, forwarder: CountingForwarder
) -> None:
    async with BehestClient(key=gateway.api_key, base_url=forwarder.base_url) as client:
        await client.token_for("u1", 1)
        for _ in range(3):
            stream = await client.chat.completions.create(
                messages=LONG,
                stream=True,
                user_id="u1",
                tier=1,
                stream_options={"include_usage": True},
            )
            async with stream:
                texts = [c for c in [chunk async for chunk in stream] if c["choices"]]
            assert stream.done and texts
    # The mint and three answers: a stream that ended with [DONE] leaves its connection
    # open for the next request instead of closing it.
    assert forwarder.connections == 1


async def test_answers_read_with_held_reads_share_one_connection(
    gateway: RunningGateway, forwarder: CountingForwarder
) -> None:
    async with BehestClient(key=gateway.api_key, base_url=forwarder.base_url) as client:
        for _ in range(2):
            gateway.set_fault(token_delay_ms=10)  # paced like a model, this request only
            stream = await client.chat.completions.create(
                messages=LONG, stream=True, user_id="u1", tier=1
            )
            stream.read_pause = 0.05  # reading is paused and resumed several times
            async with stream:
                assert [chunk async for chunk in stream]
            assert stream.done
    assert forwarder.connections == 1
