"""Relay overhead: a streamed reply through the app's websocket vs. reading the gateway directly.

    python bench/relay_bench.py [--replies 60] [--tokens 60]

Starts the app as the README does (``scripts/run`` from a copy of the project: one worker,
SQLite, the embedded gateway with the offline model at 5 ms per token), signs a user in
over HTTP and opens the app's websocket with a headless client (:class:`ReflexSocket`:
engine.io 4 / socket.io 5 over a plain websocket, as the browser speaks it). Replies
alternate between the two paths, each asking ``long: <tokens>``:

- app: the ``send`` event over the websocket, all in one conversation (the user is on the
  max tier, whose daily budget holds the growing history); first token = the first piece
  of the reply sent to the page (a ``behestLive.put`` event with text), total = the delta
  that files the finished reply;
- direct: ``BehestClient.chat.completions.create(stream=True)`` against the same gateway
  with the same key; first token = the first content chunk, total = the end of the stream.

Prints p50/p95 of both and the difference. Target: at most 5 ms added at p50 (first token).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from behest_chat.behest import BehestClient  # noqa: E402 - after the path fix above

CHAT_STATE = (
    "reflex___state____state.behest_chat___state___auth____auth_state"
    ".behest_chat___state___chat____chat_state"
)
# What the page sends when it opens another page: the server runs that page's on_load.
ON_LOAD = "reflex___state____state.reflex___state____on_load_internal_state.on_load_internal"
PASSWORD = "correct horse battery"
# Tier limits out of the way: the benches measure speed, not quotas.
UNLIMITED_ENV = json.dumps(
    {tier: {"rpm": 10**9, "requests_per_day": 10**9, "tokens_per_day": 10**15}
     for tier in ("free", "pro", "max")}
)
TARGET_ADDED_P50_MS = 5.0


class ReflexSocket:
    """A headless Reflex client: one tab's websocket, its events out and its updates in.

    ``on_update`` (if set) is called with ``(monotonic time, delta, events)`` of every
    update the server pushes, as it arrives.
    """

    def __init__(self, app_url: str, cookie: str) -> None:
        """Prepare a tab of the app at ``app_url`` signed in with the ``cookie`` header."""
        self.app_url = app_url
        self.cookie = cookie
        self.token = str(uuid.uuid4())
        self.on_update: Callable[[float, dict[str, Any], list[dict[str, Any]]], None] | None = None
        # The chat state's vars as last pushed (deltas carry only what changed).
        self.chat: dict[str, Any] = {}
        # The page the tab shows; a redirect from the server opens another, as in a browser.
        self.path = "/chat/"
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._text: list[str] = []
        # Names of the last events pushed with updates (redirects, scripts): for errors.
        self.recent_events: collections.deque[str] = collections.deque(maxlen=8)

    async def connect(self, path: str = "/chat/") -> None:
        """Open the websocket, join the namespace, hydrate the page's state and run its
        on_load handlers (one event, as the browser sends it)."""
        parts = urlsplit(self.app_url)
        host, port = parts.hostname or "localhost", parts.port or 80
        self._reader, self._writer = await asyncio.open_connection(host, port)
        self._writer.write(
            self._ws.send(
                Request(
                    host=f"{host}:{port}",
                    target=f"/_event/?token={self.token}&EIO=4&transport=websocket",
                    extra_headers=[(b"cookie", self.cookie.encode()),
                                   (b"origin", self.app_url.encode())],
                )
            )
        )
        self._pump = asyncio.create_task(self._read_loop())
        await asyncio.wait_for(self._connected.wait(), 30)
        self.path = path
        await self.emit("reflex___state____state.hydrate_and_load", {})

    async def navigate(self, path: str) -> None:
        """Open another page of the app without reloading, as a link or redirect does."""
        self.path = path
        await self.emit(ON_LOAD, {})

    async def emit(self, name: str, payload: dict[str, Any]) -> None:
        """Send one event from the page the tab shows, as the page does."""
        event = {"name": name, "payload": payload,
                 "router_data": {"pathname": self.path, "asPath": self.path}}
        await self._send("42/_event," + json.dumps(["event", event]))

    async def close(self) -> None:
        """Close the websocket."""
        if self._writer is not None and not self._closed.is_set():
            with contextlib.suppress(Exception):
                self._writer.write(self._ws.send(CloseConnection(code=1000)))
                await self._writer.drain()
            self._writer.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump

    async def _send(self, text: str) -> None:
        assert self._writer is not None
        self._writer.write(self._ws.send(Message(data=text)))
        await self._writer.drain()

    async def _read_loop(self) -> None:
        assert self._reader is not None and self._writer is not None
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    return
                self._ws.receive_data(data)
                for event in self._ws.events():
                    if isinstance(event, AcceptConnection):
                        continue
                    if isinstance(event, RejectConnection):
                        raise ConnectionError(f"websocket refused: {event.status_code}")
                    if isinstance(event, Ping):
                        self._writer.write(self._ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        return
                    elif isinstance(event, TextMessage):
                        self._text.append(event.data)
                        if event.message_finished:
                            await self._packet("".join(self._text))
                            self._text.clear()
        finally:
            self._closed.set()

    async def _packet(self, packet: str) -> None:
        now = time.monotonic()
        if packet.startswith("0"):  # engine.io open → join the app's namespace
            await self._send("40/_event,")
        elif packet == "2":  # engine.io ping
            await self._send("3")
        elif packet.startswith("40/_event"):
            self._connected.set()
        elif packet.startswith("42/_event,"):
            name, body = json.loads(packet[len("42/_event,"):])[:2]
            if name != "event":
                return
            delta = body.get("delta") or {}
            self.chat.update(delta.get(CHAT_STATE) or {})
            events = body.get("events") or []
            self.recent_events.extend(str(event.get("name", "?")) for event in events)
            for event in events:
                if event.get("name") == "_redirect":
                    await self.navigate(event["payload"]["path"])
            if self.on_update is not None:
                self.on_update(now, delta, events)


@dataclass
class Turn:
    """Timestamps of one reply seen through the websocket."""

    sent: float = 0.0
    first: float | None = None
    done: float | None = None
    status: str = ""
    why: str = ""  # for a reply that did not end "done": its error kind and text
    finished: asyncio.Event = field(default_factory=asyncio.Event)


def shown_rows(tab: ReflexSocket) -> list[dict[str, Any]]:
    """The rows the tab shows: the window, then the rows turns added since (and, while a
    turn runs, the answer being written)."""
    return [*tab.chat.get("messages_rx_state_", []), *tab.chat.get("tail_rx_state_", [])]


async def chat_turn(
    tab: ReflexSocket, prompt: str, timeout: float = 120.0, *, new_conversation: bool = True
) -> Turn:
    """Ask ``prompt`` in ``tab``; wait for the reply to be filed; return its timings.

    By default in a new conversation, which keeps every request the same size (a
    conversation sends its history, which grows and uses up the daily token budget).
    """
    if new_conversation:
        await tab.navigate("/chat/")
    turn = Turn()
    earlier = {m["id"] for m in shown_rows(tab)}

    def on_update(now: float, delta: dict[str, Any], events: list[dict[str, Any]]) -> None:
        if turn.first is None and any(_is_text_piece(event) for event in events):
            turn.first = now
        messages = shown_rows(tab)
        last = messages[-1] if messages else None
        if (
            last is not None
            and last["role"] == "assistant"
            and last["id"] not in earlier
            and last["status"] != "streaming"
            and not tab.chat.get("phase_rx_state_")
        ):
            turn.done, turn.status = now, last["status"]
            turn.why = f"{last.get('kind', '')}: {last.get('error', '')}".strip(": ")
            if turn.first is None:  # the whole answer arrived before the first flush
                turn.first = now
            turn.finished.set()

    tab.on_update = on_update
    turn.sent = time.monotonic()
    await tab.emit(f"{CHAT_STATE}.send", {"form_data": {"prompt": prompt}})
    try:
        await asyncio.wait_for(turn.finished.wait(), timeout)
    except TimeoutError:
        messages = shown_rows(tab) or [{}]
        raise TimeoutError(
            f"reply not filed within {timeout:.0f} s: last message "
            f"{messages[-1].get('role')}/{messages[-1].get('status')}, "
            f"phase {tab.chat.get('phase_rx_state_')!r}, notice "
            f"{tab.chat.get('notice_rx_state_')!r}, last events {list(tab.recent_events)}"
        ) from None
    return turn


def _is_text_piece(event: dict[str, Any]) -> bool:
    """A piece of the reply in progress with some text (``behest_chat.live_draft.put``)."""
    code = (event.get("payload") or {}).get("javascript_code") or ""
    return code.startswith("behestLive.put(") and not code.endswith(',"")')


def register_user(
    app_url: str, client: httpx.Client | None = None, username: str | None = None
) -> str:
    """Create a user through ``POST /api/auth/register``; returns the Cookie header value."""
    username = username or f"b{secrets.token_hex(5)}"
    http = client or httpx.Client(timeout=30)
    http.cookies.clear()  # registering while signed in would end the previous user's session
    response = http.post(
        f"{app_url}/api/auth/register",
        json={"username": username, "display_name": username, "password": PASSWORD},
        headers={"Origin": app_url},
    )
    response.raise_for_status()
    return f"behest_chat_session={response.cookies['behest_chat_session']}"


@contextlib.contextmanager
def running_app(**env: str) -> Iterator[Any]:
    """The app from a fresh copy of the project, as ``scripts/run`` starts it."""
    from tests.fixtures.app import project_copy, run_app

    with tempfile.TemporaryDirectory(prefix="behest-bench-") as directory:
        base = Path(directory)
        root = project_copy(base / "project")
        (base / "work").mkdir()
        overrides = {"BEHEST_GATEWAY_LIMITS": UNLIMITED_ENV, **env}
        with run_app(base / "work", root, **overrides) as server:
            try:
                yield server
            except BaseException:
                print(f"the app's log, last lines:\n{server.log()[-3000:]}", file=sys.stderr)
                raise


@contextlib.contextmanager
def gateway_process() -> Iterator[dict[str, str]]:
    """A gateway process of its own (offline model, 5 ms/token, no limits): the app's env."""
    from tests.fixtures.gateway import start_gateway

    with tempfile.TemporaryDirectory(prefix="behest-bench-gateway-") as directory:
        gateway = start_gateway(
            Path(directory),
            {"BEHEST_GATEWAY_TOKEN_DELAY_MS": "5", "BEHEST_GATEWAY_LIMITS": UNLIMITED_ENV},
            project={"allowed_origins": []},
            faults=False,
        )
        try:
            yield {"BEHEST_BASE_URL": gateway.base_url, "BEHEST_KEY": gateway.api_key}
        finally:
            gateway.stop()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q) - 1]


def set_tier(app: Any, username: str, tier: str) -> None:
    """``python -m behest_chat.accounts set-tier`` against the app's database."""
    env = {"PATH": os.environ.get("PATH", ""), "APP_ENV_FILE": os.devnull,
           "DATABASE_URL": app.env["DATABASE_URL"]}
    subprocess.run([sys.executable, "-m", "behest_chat.accounts", "set-tier", username, tier],
                   cwd=ROOT, env=env, check=True, capture_output=True)


async def measure(app: Any, replies: int, tokens: int) -> dict[str, list[float]]:
    app_url, gateway_url, api_key = app.url, app.gateway_url, app.env["BEHEST_KEY"]
    username = f"b{secrets.token_hex(5)}"
    cookie = await asyncio.to_thread(register_user, app_url, None, username)
    # One long conversation: the max tier's daily budget holds its growing history.
    await asyncio.to_thread(set_tier, app, username, "max")
    tab = ReflexSocket(app_url, cookie)
    await tab.connect()
    prompt = f"long: {tokens}"
    samples: dict[str, list[float]] = {"app_first": [], "app_total": [],
                                        "direct_first": [], "direct_total": []}
    async with BehestClient(key=api_key, base_url=gateway_url) as client:
        for n in range(replies + 2):  # two warm-up rounds are not counted
            turn = await chat_turn(tab, prompt, new_conversation=n == 0)
            if turn.status != "done" or turn.first is None or turn.done is None:
                raise SystemExit(f"a reply through the app ended as {turn.status!r}")
            started = time.monotonic()
            first = None
            stream = await client.chat.completions.create(
                messages=[{"role": "user", "content": prompt}], stream=True,
                user_id="bench-direct", tier=1)
            async with stream:
                async for chunk in stream:
                    if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get(
                            "content"):
                        first = time.monotonic()
            ended = time.monotonic()
            if n < 2:
                continue
            samples["app_first"].append((turn.first - turn.sent) * 1000)
            samples["app_total"].append((turn.done - turn.sent) * 1000)
            samples["direct_first"].append(((first or ended) - started) * 1000)
            samples["direct_total"].append((ended - started) * 1000)
    await tab.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=60)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument(
        "--gateway", choices=("embedded", "process"), default="embedded",
        help="the app's default embedded gateway, or a gateway process of its own (as Behest "
             "is: the app's interpreter then does not also serve the gateway)",
    )
    args = parser.parse_args()
    print(f"Starting the app (one worker, SQLite, {args.gateway} gateway at 5 ms/token) ...")
    with contextlib.ExitStack() as stack:
        env = {"BEHEST_GATEWAY_TOKEN_DELAY_MS": "5"}
        if args.gateway == "process":
            env.update(stack.enter_context(gateway_process()))
        app = stack.enter_context(running_app(**env))
        samples = asyncio.run(measure(app, args.replies, args.tokens))
    print(f"\nRelay overhead, {args.replies} replies of {args.tokens} tokens each, "
          f"{args.gateway} gateway (ms)")
    print(f"  {'':<22}{'p50':>9}{'p95':>9}")
    for label, key in (("first token, app", "app_first"), ("first token, direct", "direct_first"),
                       ("total, app", "app_total"), ("total, direct", "direct_total")):
        p50, p95 = percentile(samples[key], 50), percentile(samples[key], 95)
        print(f"  {label:<22}{p50:>9.1f}{p95:>9.1f}")
    added_first = percentile(samples["app_first"], 50) - percentile(samples["direct_first"], 50)
    added_total = percentile(samples["app_total"], 50) - percentile(samples["direct_total"], 50)
    print(f"  {'added at p50, first':<22}{added_first:>9.1f}")
    print(f"  {'added at p50, total':<22}{added_total:>9.1f}")
    verdict = "meets" if added_first <= TARGET_ADDED_P50_MS else "misses"
    print(f"Target: <= {TARGET_ADDED_P50_MS:.0f} ms added at p50 (first token): {verdict}")


if __name__ == "__main__":
    main()
