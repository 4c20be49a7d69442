"""Stream framings the gateway never sends, served byte-for-byte by a tiny real HTTP server.

The gateway always frames with LF and ends with ``[DONE]``; other Behest-compatible servers
may not. Each test serves one canned response over a real socket (mint is skipped by
signing locally) and checks what the client makes of it.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest

from behest_chat.behest import BehestClient, errors
from behest_chat.behest.keys import generate_signing_key_pem
from tests.fixtures.tcp import LoopbackServer

MESSAGES = [{"role": "user", "content": "hi"}]


def chunk(text: str) -> str:
    return json.dumps(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    )


class CannedServer(LoopbackServer):
    """Answers every request with one fixed HTTP response, written in pieces."""

    def __init__(self) -> None:
        super().__init__()
        self.status_line = "HTTP/1.1 200 OK"
        self.headers = {"Content-Type": "text/event-stream", "X-Trace-Id": "tr_canned"}
        self.pieces: list[bytes] = []
        self.requests: list[bytes] = []
        self.linger = False  # keep the connection open after the pieces, until stop()
        self.silent = False  # read the request, then close without answering
        self._released = asyncio.Event()

    async def stop(self) -> None:
        self._released.set()  # a lingering answer ends first
        await super().stop()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        self.requests.append(head + await reader.readexactly(length))
        if self.silent:
            writer.close()
            return
        header_lines = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        writer.write(f"{self.status_line}\r\n{header_lines}Connection: close\r\n\r\n".encode())
        for piece in self.pieces:
            writer.write(piece)
            await writer.drain()
        if self.linger:
            await self._released.wait()
        writer.close()


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_signing_key_pem()


@pytest.fixture
async def server() -> AsyncIterator[CannedServer]:
    canned = CannedServer()
    await canned.start()
    yield canned
    await canned.stop()


def canned_client(base_url: str, pem: str, *, max_retries: int = 0) -> BehestClient:
    """A client that signs locally (no mint request reaches the canned server)."""
    return BehestClient(
        key="behest_pk_" + pem,
        base_url=base_url,
        kid="kid_canned",
        tenant_id="t",
        project_id="p",
        max_retries=max_retries,
    )


@pytest.fixture
async def client(server: CannedServer, pem: str) -> AsyncIterator[BehestClient]:
    async with canned_client(server.base_url, pem) as client:
        yield client


async def read_all(client: BehestClient, received: list[dict] | None = None) -> list[dict]:
    chunks = received if received is not None else []
    async with asyncio.timeout(5):
        stream = await client.chat.completions.create(messages=MESSAGES, stream=True, user_id="u")
        async with stream:
            async for item in stream:
                chunks.append(item)
    return chunks


def contents(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"]["content"] for c in chunks)


def byte_by_byte(data: str) -> list[bytes]:
    raw = data.encode()
    return [raw[i : i + 1] for i in range(len(raw))]


@pytest.mark.parametrize(
    "splitter",
    [lambda s: [s.encode()], byte_by_byte],
    ids=["one piece", "byte by byte"],
)
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
async def test_any_line_ending_any_split(
    server: CannedServer, client: BehestClient, newline: str, splitter: Callable[[str], list[bytes]]
) -> None:
    nl = newline
    body = (
        f": comment{nl}"
        f"data: {chunk('Grüße ')}{nl}{nl}"
        f"event: message{nl}data: {chunk('🙂 ')}{nl}{nl}"
        f"data: {chunk('done')}{nl}{nl}"
        f"data: [DONE]{nl}{nl}"
    )
    server.pieces = splitter(body)
    assert contents(await read_all(client)) == "Grüße 🙂 done"


async def test_request_carries_bearer_session_and_body(
    server: CannedServer, client: BehestClient
) -> None:
    server.pieces = [b"data: [DONE]\n\n"]
    stream = await client.chat.completions.create(
        messages=MESSAGES,
        stream=True,
        user_id="u",
        session_id="s-1",
        thread_id="t-1",
        max_tokens=3,
    )
    async with stream:
        assert [c async for c in stream] == []
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lowered = head.decode().lower()
    assert "\r\nauthorization: bearer ey" in lowered
    assert "\r\nx-session-id: s-1" in lowered
    assert "\r\nx-thread-id: t-1" in lowered
    assert "\r\naccept: text/event-stream" in lowered
    assert json.loads(body) == {"messages": MESSAGES, "stream": True, "max_tokens": 3}


async def test_requests_go_through_the_proxy_the_environment_names(
    server: CannedServer, pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY applies as with httpx's own transport: the canned server plays the proxy
    for a host that only it can reach."""
    monkeypatch.setenv("HTTP_PROXY", server.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.pieces = [f"data: {chunk('via proxy')}\n\ndata: [DONE]\n\n".encode()]
    async with canned_client("http://behest.proxied.invalid:8080", pem) as proxied:
        assert contents(await read_all(proxied)) == "via proxy"
    request_line = server.requests[0].split(b"\r\n", 1)[0]
    assert request_line == b"POST http://behest.proxied.invalid:8080/v1/chat/completions HTTP/1.1"


async def test_a_server_that_stalls_after_done_does_not_hold_the_answer(
    server: CannedServer, client: BehestClient
) -> None:
    server.pieces = [f"data: {chunk('all of it')}\n\ndata: [DONE]\n\n".encode()]
    server.linger = True
    started = time.monotonic()
    assert contents(await read_all(client)) == "all of it"
    assert time.monotonic() - started < 1.5


async def test_a_server_that_closes_without_answering_is_not_asked_again(
    server: CannedServer, pem: str
) -> None:
    """The request may have arrived, so it is not sent twice, even with retries on."""
    server.silent = True
    async with canned_client(server.base_url, pem, max_retries=2) as retrying:
        with pytest.raises(errors.BehestConnectionError) as caught:
            await read_all(retrying)
    assert not isinstance(caught.value, (errors.ConnectError, errors.TimeoutError))
    assert "no answer from" in str(caught.value)
    assert len(server.requests) == 1


async def test_clean_end_without_done_is_a_cut(server: CannedServer, client: BehestClient) -> None:
    server.pieces = [f"data: {chunk('partial')}\n\n".encode()]
    received: list[dict] = []
    with pytest.raises(errors.StreamCutError) as caught:
        await read_all(client, received)
    assert contents(received) == "partial"
    assert caught.value.trace_id == "tr_canned"


async def test_end_inside_a_frame_is_a_cut(server: CannedServer, client: BehestClient) -> None:
    server.pieces = [f'data: {chunk("a")}\n\ndata: {{"obj'.encode()]
    with pytest.raises(errors.StreamCutError):
        await read_all(client)


async def test_typed_error_event(server: CannedServer, client: BehestClient) -> None:
    error = {"error": {"code": "content_filter", "message": "blocked", "details": {"rule": 7}}}
    server.pieces = [f"data: {chunk('x')}\n\nevent: error\ndata: {json.dumps(error)}\n\n".encode()]
    with pytest.raises(errors.StreamErrorEvent) as caught:
        await read_all(client)
    assert (caught.value.code, caught.value.message, caught.value.details) == (
        "content_filter",
        "blocked",
        {"rule": 7},
    )


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('event: error\ndata: "upstream overloaded"', "stream_error"),
        ("event: error\ndata: upstream overloaded", "stream_error"),
        ('data: {"error": "upstream overloaded", "code": "overloaded"}', "overloaded"),
    ],
    ids=["json string", "plain text", "flat envelope"],
)
async def test_error_event_with_a_plain_message(
    server: CannedServer, client: BehestClient, frame: str, code: str
) -> None:
    server.pieces = [f"{frame}\n\n".encode()]
    with pytest.raises(errors.StreamErrorEvent) as caught:
        await read_all(client)
    assert caught.value.message == "upstream overloaded"
    assert caught.value.code == code


@pytest.mark.parametrize("payload", ["[1, 2]", "42", "not json at all", '{"unterminated": '])
async def test_frames_that_are_not_json_objects(
    server: CannedServer, client: BehestClient, payload: str
) -> None:
    server.pieces = [f"data: {payload}\n\n".encode()]
    with pytest.raises(errors.MalformedFrameError):
        await read_all(client)


async def test_invalid_utf8_is_a_malformed_frame(
    server: CannedServer, client: BehestClient
) -> None:
    server.pieces = [b'data: {"choices": "\xff"}\n\n']
    with pytest.raises(errors.MalformedFrameError, match="UTF-8"):
        await read_all(client)


async def test_error_status_with_a_non_json_body(
    server: CannedServer, client: BehestClient
) -> None:
    server.status_line = "HTTP/1.1 502 Bad Gateway"
    server.headers = {"Content-Type": "text/html", "Content-Length": "14", "X-Request-Id": "r-1"}
    server.pieces = [b"<h1>oops</h1>\n"]
    with pytest.raises(errors.ServerError) as caught:
        await read_all(client)
    assert (caught.value.status, caught.value.message, caught.value.trace_id) == (
        502,
        "HTTP 502",
        "r-1",
    )


async def test_non_streaming_answer_that_is_not_json(
    server: CannedServer, client: BehestClient
) -> None:
    server.headers = {"Content-Type": "text/plain", "Content-Length": "5"}
    server.pieces = [b"hello"]
    with pytest.raises(errors.BehestAPIError) as caught:
        await client.chat.completions.create(messages=MESSAGES, user_id="u")
    assert caught.value.code == "invalid_response"
