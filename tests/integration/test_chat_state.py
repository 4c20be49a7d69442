"""ChatState through Reflex's real event processor, against the real gateway and database.

No browser and no server: events go through the same processor, state manager and delta
computation that the app uses, so these tests see exactly the deltas a tab would receive.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from behest_chat import services
from behest_chat.accounts import service as accounts
from behest_chat.accounts.sessions import SESSION_COOKIE, create_session
from behest_chat.settings import get_settings

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
PUT = re.compile(r"behestLive\.put\((\d+),(\d+),(.*)\)", re.S)


def pieces(events: list[Any]) -> list[tuple[int, int, str]]:
    """The (answer id, offset, text) pieces of the reply in progress sent to the page."""
    found = []
    for event in events:
        match = PUT.fullmatch(str(event.payload.get("javascript_code", "")))
        if event.name.endswith("_call_script") and match:
            found.append((int(match[1]), int(match[2]), json.loads(match[3])))
    return found


def shown_rows(state: Any) -> list[dict[str, str]]:
    """Every row the tab shows: the window, then the rows turns added since."""
    return [*state.messages, *state._recent]


def page_texts(events: list[Any]) -> dict[int, str]:
    """What assets/live_draft.js builds from those pieces: answer id → text."""
    texts: dict[int, str] = {}
    waiting: dict[int, list[tuple[int, str]]] = {}
    for answer_id, at, text in pieces(events):
        waiting.setdefault(answer_id, []).append((at, text))
        joined = True
        while joined:
            joined = False
            have = texts.get(answer_id, "")
            for offset, piece in list(waiting[answer_id]):
                if offset <= len(have):
                    waiting[answer_id].remove((offset, piece))
                    if offset + len(piece) > len(have):
                        have = have[:offset] + piece
                    joined = True
            texts[answer_id] = have
    return texts


class Recorder:
    """Stands in for the socket.io namespace: keeps every update the browser would get."""

    def __init__(self) -> None:
        self.updates: list[Any] = []
        self.times: list[float] = []  # time.monotonic() of each update

    async def emit_update(self, update: Any, token: str) -> None:
        self.updates.append(update)
        self.times.append(time.monotonic())

    def deltas(self) -> list[dict[str, Any]]:
        return [u.delta for u in self.updates if getattr(u, "delta", None)]

    def events(self) -> list[Any]:
        return [e for u in self.updates for e in (getattr(u, "events", None) or [])]


@dataclass
class Tab:
    """One browser tab's identity as the processor sees it, on the page at `path`."""

    processor: Any
    manager: Any
    recorder: Recorder
    cookie: str
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    path: str = "/chat/"

    def event(self, handler: str, **payload: Any):
        from reflex_base.event import Event

        from behest_chat.state import ChatState

        return Event(
            name=f"{ChatState.get_full_name()}.{handler}",
            payload=payload,
            router_data={
                "pathname": "/chat/[[cid]]",
                "asPath": self.path,
                "query": {},
                "token": self.token,
                "sid": "test-sid",
                "headers": {"cookie": self.cookie, "origin": "http://localhost:3000"},
            },
        )

    async def run(self, handler: str, **payload: Any) -> None:
        """Run one event to its end; a redirect it sends opens that page, as in a browser."""
        seen = len(self.recorder.updates)
        future = await self.processor.enqueue(self.token, self.event(handler, **payload))
        await asyncio.wait_for(future.wait_all(), 20)
        for update in self.recorder.updates[seen:]:
            if isinstance(update, tuple):  # a recorder that several tabs share: (token, update)
                token, update = update
                if token != self.token:
                    continue
            for event in getattr(update, "events", None) or []:
                if event.name == "_redirect" and event.payload["path"].startswith("/chat"):
                    await self.open(event.payload["path"])

    async def open(self, path: str = "/chat/") -> None:
        """Load a page as the browser does (hydrate, then the page's on_load)."""
        self.path = path
        await self.run("load")

    async def state(self):
        from reflex.istate.manager.token import BaseStateToken

        from behest_chat.state import ChatState

        root = await self.manager.get_state(BaseStateToken(ident=self.token, cls=ChatState))
        return await root.get_state(ChatState)


@pytest.fixture
def app_env(gateway, app_db, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings for the app module: the test gateway, the test database."""
    monkeypatch.setenv("BEHEST_KEY", gateway.api_key)
    monkeypatch.setenv("BEHEST_BASE_URL", gateway.base_url)
    monkeypatch.setenv("APP_ENV_FILE", "/nonexistent/.env")
    get_settings.cache_clear()
    services._client = None
    gateway.reset()
    gateway.clear_faults()


async def _open_tab(cookie: str) -> AsyncIterator[Tab]:
    from reflex.istate.manager.memory import StateManagerMemory
    from reflex_base.event.processor.base_state_processor import BaseStateEventProcessor
    from reflex_base.registry import RegistrationContext

    from behest_chat.behest_chat import app

    # Each test runs in a fresh context; bind the app's registry of states and handlers.
    RegistrationContext.set(app._registration_context)
    manager, recorder = StateManagerMemory(), Recorder()
    processor = BaseStateEventProcessor(graceful_shutdown_timeout=5).configure(
        state_manager=manager, event_namespace=recorder
    )
    async with processor:
        tab = Tab(processor, manager, recorder, cookie)
        await tab.open()
        yield tab
    if services._client is not None:
        await services._client.aclose()
        services._client = None


@pytest.fixture
async def tab(app_env) -> AsyncIterator[Tab]:
    """A signed-in tab."""
    user = accounts.register("alice", "Alice", "correct horse battery")
    secret = create_session(user)
    async for opened in _open_tab(f"{SESSION_COOKIE}={secret}"):
        yield opened


@pytest.fixture
async def anonymous_tab(app_env) -> AsyncIterator[Tab]:
    """A tab without a session cookie."""
    async for opened in _open_tab(""):
        yield opened


async def _long_answer_streaming(
    tab: Tab, gateway, tokens: int = 400, token_delay_ms: int = 50
) -> Any:
    """Send a long question and wait until its answer shows a few words (more than a first
    token like "#", which a reply stopped there would not show); returns the send's event
    future."""
    gateway.set_fault(token_delay_ms=token_delay_ms, count=1)
    sending = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": f"long: {tokens}"})
    )

    async def streaming() -> bool:
        return any(len(text) >= 20 for text in page_texts(tab.recorder.events()).values())

    await _until(streaming)
    return sending


async def _bobs_tab(tab: Tab) -> Tab:
    """Another user's signed-in tab, on the same processor as ``tab``."""
    bob = accounts.register("bob", "Bob", "correct horse battery")
    other = Tab(tab.processor, tab.manager, tab.recorder, f"{SESSION_COOKIE}={create_session(bob)}")
    await other.open()
    return other


async def _another_turn_completes_while_held(
    other: Tab, event: Any, held: threading.Event, release: threading.Event
) -> None:
    """Once ``event`` waits on a held database call (``held`` set), another user's whole turn
    completes while ``event`` is still not done; then the call is released."""
    try:
        assert await asyncio.to_thread(held.wait, 10)
        await other.run("send", form_data={"prompt": "echo: meanwhile"})
        assert shown_rows(await other.state())[-1]["content"] == "meanwhile"
        assert not event.done()
    finally:
        release.set()


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)  # polling shared state, bounded by the deadline


async def test_send_streams_a_reply_in_a_few_small_deltas(tab: Tab, gateway) -> None:
    gateway.set_fault(token_delay_ms=5, count=1)
    await tab.run("send", form_data={"prompt": "long: 300"})
    state = await tab.state()
    assert [m["role"] for m in shown_rows(state)] == ["user", "assistant"]
    reply = shown_rows(state)[1]
    assert reply["status"] == "done" and len(reply["content"].split()) >= 200
    assert state.phase == "" and not state.busy

    sent_pieces = [p for p in pieces(tab.recorder.events()) if p[2]]
    # ~300 tokens at 5 ms each ≈ 1.5 s; flushed every 50 ms → tens of updates, not hundreds.
    assert 3 <= len(sent_pieces) <= 60, len(sent_pieces)
    # Each piece carries only new text: together they are the reply (bar its last flush).
    assert sum(len(p[2]) for p in sent_pieces) <= len(reply["content"])
    shown = page_texts(tab.recorder.events())[int(reply["id"])]
    assert len(shown) > len(reply["content"]) // 2 and reply["content"].startswith(shown)
    assert not [d for d in tab.recorder.deltas() if any("draft" in k for k in _keys(d))]
    sent = repr(tab.recorder.updates)
    assert not JWT.search(sent)
    assert gateway.api_key not in sent


async def test_with_many_answers_streaming_a_reply_read_in_batches_arrives_whole(
    tab: Tab, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from behest_chat.state import chat

    monkeypatch.setattr(chat, "_BATCHED_READS_FROM", 1)  # this turn alone counts as many
    gateway.set_fault(token_delay_ms=5, count=2)
    await tab.run("send", form_data={"prompt": "long: 120"})
    await tab.run("send", form_data={"prompt": "long: 120"})
    state = await tab.state()
    first, second = shown_rows(state)[1], shown_rows(state)[3]
    assert first["status"] == second["status"] == "done"
    assert first["content"] == second["content"] and len(first["content"].split()) >= 80
    shown = page_texts(tab.recorder.events())[int(second["id"])]
    assert len(shown) > len(second["content"]) // 2 and second["content"].startswith(shown)


async def test_with_many_answers_streaming_the_first_piece_is_not_held_for_a_batch(
    tab: Tab, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads are held one flush interval each to gather tokens, but only after the first
    piece: the stream opens with an event that has no text, and holding the read behind it
    would hold the first token back by a whole interval."""
    from behest_chat.state import chat

    monkeypatch.setattr(chat, "_BATCHED_READS_FROM", 1)  # this turn alone counts as many
    monkeypatch.setenv("APP_STREAM_FLUSH_MS", "1000")
    get_settings.cache_clear()
    gateway.set_fault(token_delay_ms=100, count=1)  # the first token 100 ms after the headers
    seen = len(tab.recorder.updates)
    sent_at = time.monotonic()
    await tab.run("send", form_data={"prompt": "long: 5"})
    first_piece_at = next(
        at
        for update, at in zip(tab.recorder.updates[seen:], tab.recorder.times[seen:], strict=True)
        for event in getattr(update, "events", None) or []
        if pieces([event]) and pieces([event])[0][2]
    )
    # Held, the first piece would come a whole second (the interval) after the headers.
    assert first_piece_at - sent_at < 0.7
    reply = shown_rows(await tab.state())[1]
    assert reply["status"] == "done" and reply["content"]


async def test_a_turn_in_the_newest_conversation_does_not_resend_the_sidebar(
    tab: Tab, gateway
) -> None:
    await tab.run("send", form_data={"prompt": "echo: first"})
    first = await tab.state()
    assert [c["title"] for c in first.conversations] == ["echo: first"]
    before = len(tab.recorder.updates)
    await tab.run("send", form_data={"prompt": "echo: second"})
    state = await tab.state()
    assert [m["content"] for m in shown_rows(state)] == [
        "echo: first",
        "first",
        "echo: second",
        "second",
    ]
    sent = [
        k for u in tab.recorder.updates[before:] for k in _keys(getattr(u, "delta", None) or {})
    ]
    assert any(k.startswith(("messages", "tail")) for k in sent)
    assert not any(k.startswith("conversations") for k in sent)


async def test_turns_send_their_own_rows_not_the_whole_window(tab: Tab, gateway) -> None:
    """A turn appends its question and answer to the tail; the window goes to the page
    again only when the tail is folded into it, and the rows are always what a reload
    shows."""
    from behest_chat.conversations import store
    from behest_chat.state.turn_store import message_rows

    window_sent = []
    for n in range(8):
        before = len(tab.recorder.updates)
        await tab.run("send", form_data={"prompt": f"echo: turn {n}"})
        sent = [
            k
            for u in tab.recorder.updates[before:]
            for k in _keys(getattr(u, "delta", None) or {})
        ]
        window_sent.append(any(k.startswith("messages") for k in sent))
        state = await tab.state()
        views, _ = store.window(accounts.find_user("alice").user_id, state.conversation_id)
        assert shown_rows(state) == message_rows(views)
        assert state.last_row_id == shown_rows(state)[-1]["id"]
    # The first send opens the new conversation's page (the window whole); later turns
    # send the window again only to fold the tail into it, every few turns.
    assert window_sent[0] and 1 <= sum(window_sent[1:]) <= 3, window_sent


async def test_the_first_turn_after_opening_a_conversation_sends_only_its_rows(
    tab: Tab, gateway
) -> None:
    """The last answer offers Regenerate; the next question moves that offer on by naming
    the new last row, not by rewriting the answer's row in the window."""
    await tab.run("send", form_data={"prompt": "echo: first"})
    state = await tab.state()
    path, answer = f"/chat/{state.conversation_id}", shown_rows(state)[-1]
    await tab.open("/chat/")
    await tab.open(path)
    state = await tab.state()
    assert state.messages[-1]["regenerate"] == "1"
    assert state.last_row_id == answer["id"]

    before = len(tab.recorder.updates)
    await tab.run("send", form_data={"prompt": "echo: second"})
    sent = {
        k for u in tab.recorder.updates[before:] for k in _keys(getattr(u, "delta", None) or {})
    }
    state = await tab.state()
    assert not any(k.startswith("messages") for k in sent), sent
    assert [r["role"] for r in state.tail] == ["user", "assistant"]
    assert state.last_row_id == state.tail[-1]["id"] != answer["id"]


async def test_a_new_conversations_redirect_reads_nothing_again(tab: Tab, gateway) -> None:
    """The send that creates a conversation shows it, its sidebar and allowance; the load
    of the address it redirects to sends none of them again."""
    from behest_chat.conversations import store
    from behest_chat.state.turn_store import message_rows

    before = len(tab.recorder.updates)
    await tab.run("send", form_data={"prompt": "echo: a new conversation"})
    state = await tab.state()
    assert tab.path == f"/chat/{state.conversation_id}"  # the redirect was loaded
    loads = [
        set(_keys(u.delta))
        for u in tab.recorder.updates[before:]
        if "rx_router_url_rx_state_" in _keys(getattr(u, "delta", None) or {})
    ]
    assert len(loads) == 1
    assert not any(k.startswith(("messages", "recent", "conversations")) for k in loads[0])
    user_id = accounts.find_user("alice").user_id
    assert shown_rows(state) == message_rows(store.window(user_id, state.conversation_id)[0])
    assert [c["id"] for c in state.conversations] == [state.conversation_id]

    await tab.open(tab.path)  # a reload reads it all again
    loads = [set(_keys(u.delta)) for u in tab.recorder.updates[-3:] if getattr(u, "delta", None)]
    assert any("messages_rx_state_" in keys for keys in loads), loads


async def test_a_turn_puts_its_conversation_on_top_of_the_sidebar(tab: Tab, gateway) -> None:
    await tab.run("send", form_data={"prompt": "echo: first"})
    first = (await tab.state()).conversation_id
    await tab.open("/chat/")
    await tab.run("send", form_data={"prompt": "echo: second"})
    second = (await tab.state()).conversation_id
    assert [c["id"] for c in (await tab.state()).conversations] == [second, first]

    await tab.open(f"/chat/{first}")
    await tab.run("send", form_data={"prompt": "echo: again"})
    assert [c["id"] for c in (await tab.state()).conversations] == [first, second]
    # Another turn in the conversation on top leaves the sidebar as it is.
    before = len(tab.recorder.updates)
    await tab.run("send", form_data={"prompt": "echo: and again"})
    sent = {
        k for u in tab.recorder.updates[before:] for k in _keys(getattr(u, "delta", None) or {})
    }
    assert not any(k.startswith("conversations") for k in sent), sent
    assert [c["id"] for c in (await tab.state()).conversations] == [first, second]


async def test_an_ending_the_page_already_read_is_not_read_again(tab: Tab, gateway) -> None:
    """A page reloaded as a fast answer ends can read the answer as stored before the
    ending is shown; the ending then has nothing to add (it does not read the
    conversation again while holding the tab)."""
    from reflex.istate.manager.token import BaseStateToken

    from behest_chat.conversations import store
    from behest_chat.state import ChatState
    from behest_chat.state.turn_store import message_rows

    gateway.set_fault(token_delay_ms=20, count=1)
    sending = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "long: 20"})
    )
    user_id = accounts.find_user("alice").user_id

    def live_answer() -> tuple[str, int] | None:
        found = store.list_conversations(user_id)
        views = store.window(user_id, found[0].id)[0] if found else []
        live = [v for v in views if v.role == "assistant" and v.status == "streaming"]
        return (found[0].id, live[0].id) if live else None

    await _until(lambda: asyncio.to_thread(lambda: live_answer() is not None))
    cid, answer_id = live_answer()  # type: ignore[misc]
    await tab.open(f"/chat/{cid}")  # the send's redirect
    # Hold the tab while the answer ends: the reload queues first, the ending after it.
    async with tab.manager.modify_state(BaseStateToken(ident=tab.token, cls=ChatState)):
        loading = await tab.processor.enqueue(tab.token, tab.event("load"))

        async def stored() -> bool:
            answer = await asyncio.to_thread(store.message_for_user, user_id, answer_id)
            return answer is not None and answer.status == "done"

        await _until(stored)
        seen = len(tab.recorder.updates)
    await asyncio.wait_for(loading.wait_all(), 20)
    await asyncio.wait_for(sending.wait_all(), 20)
    updates = [
        set(_keys(getattr(u, "delta", None) or {})) for u in tab.recorder.updates[seen:]
    ]
    # The reload shows the window as stored; the ending after it sends no rows.
    loaded = [i for i, keys in enumerate(updates) if "messages_rx_state_" in keys]
    ended = [i for i, keys in enumerate(updates) if "live_status_rx_state_" in keys]
    assert len(loaded) == 1 and len(ended) == 1 and loaded[0] < ended[0], updates
    assert not any(k.startswith(("messages", "recent")) for k in updates[ended[0]]), updates
    state = await tab.state()
    assert not state.busy
    assert shown_rows(state) == message_rows(store.window(user_id, cid)[0])
    assert shown_rows(state)[-1]["status"] == "done"


async def test_a_page_load_reading_the_database_holds_up_no_other_tab(
    tab: Tab, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load reads in a database thread: while it waits on the database, the event loop
    serves other tabs (here, a whole turn of another user)."""

    from behest_chat.state import chat as chat_module

    other = await _bobs_tab(tab)
    alices_secret = tab.cookie.split("=", 1)[1]
    reading, release = threading.Event(), threading.Event()
    read_page = chat_module.read_page

    def slow_read_page(secret: str, *args: Any) -> Any:
        if secret == alices_secret:  # Alice's database is slow today
            reading.set()
            release.wait(10)
        return read_page(secret, *args)

    monkeypatch.setattr(chat_module, "read_page", slow_read_page)
    loading = await tab.processor.enqueue(tab.token, tab.event("load"))
    await _another_turn_completes_while_held(other, loading, reading, release)
    await asyncio.wait_for(loading, 10)
    assert (await tab.state()).signed_in


# An event of the chat page, the store function it waits on, and what it did once released
# (given the tab's state, the conversation's id and the store).
_HELD_EVENTS = {
    "remember_draft": (
        {"value": "half-typed"},
        "save_draft",
        lambda state, cid, store: store.get_conversation(
            accounts.find_user("alice").user_id, cid
        ).draft == "half-typed",
    ),
    "save_rename": (
        {"form_data": {"title": "Renamed"}},
        "rename_conversation",
        lambda state, cid, store: state.title == "Renamed"
        and [c["title"] for c in state.conversations] == ["Renamed"],
    ),
    "ask_delete": ({"conversation_id": "?"}, "get_conversation",
                   lambda state, cid, store: state.delete_id == cid),
    "start_edit": ({"message_id": "?"}, "message_for_user",
                   lambda state, cid, store: state.editing_id != ""),
}


@pytest.mark.parametrize("name", sorted(_HELD_EVENTS))
async def test_an_event_waiting_on_the_database_holds_up_no_other_tab(
    tab: Tab, gateway, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The chat page's events read and write the database in a thread: while one waits on
    it, the event loop serves other tabs (a whole turn of another user), and the event
    still does its work once the database answers."""

    from behest_chat.conversations import store

    await tab.run("send", form_data={"prompt": "echo: first"})
    state = await tab.state()
    cid, question_id = state.conversation_id, shown_rows(state)[0]["id"]
    if name == "save_rename":
        await tab.run("start_rename", conversation_id=cid)
    other = await _bobs_tab(tab)
    payload, function_name, did_its_work = _HELD_EVENTS[name]
    # "?": the conversation's id, or its question's for start_edit.
    payload = {k: (question_id if k == "message_id" else cid) if v == "?" else v
               for k, v in payload.items()}
    alice_id = accounts.find_user("alice").user_id
    waiting, release = threading.Event(), threading.Event()
    function = getattr(store, function_name)

    def held(user_id: int, *args: Any, **kwargs: Any) -> Any:
        if user_id == alice_id:  # Bob's turn uses the same functions
            waiting.set()
            release.wait(10)
        return function(user_id, *args, **kwargs)

    monkeypatch.setattr(store, function_name, held)
    event = await tab.processor.enqueue(tab.token, tab.event(name, **payload))
    await _another_turn_completes_while_held(other, event, waiting, release)
    await asyncio.wait_for(event.wait_all(), 10)
    assert did_its_work(await tab.state(), cid, store)


async def test_a_stop_waiting_on_the_database_holds_up_no_other_tab(
    tab: Tab, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop marks the answer in a database thread: while it waits on the database, the
    event loop serves other tabs (a whole turn of another user), and the answer still ends
    as stopped."""

    from behest_chat.conversations import store

    other = await _bobs_tab(tab)
    sending = await _long_answer_streaming(tab, gateway)
    marking, release = threading.Event(), threading.Event()
    request_stop = store.request_stop

    def slow_request_stop(*args: Any) -> Any:
        marking.set()
        release.wait(10)
        return request_stop(*args)

    monkeypatch.setattr(store, "request_stop", slow_request_stop)
    stopping = await tab.processor.enqueue(tab.token, tab.event("stop"))
    await _another_turn_completes_while_held(other, stopping, marking, release)
    await asyncio.wait_for(stopping.wait_all(), 10)
    await asyncio.wait_for(sending.wait_all(), 10)
    assert shown_rows(await tab.state())[-1]["status"] == "stopped"


async def test_a_reload_between_a_sends_store_and_its_start_shows_the_question_once(
    tab: Tab, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload whose load reads the conversation after a send stored its question, but
    before the send showed it, already shows the question: the send must not add it again."""

    from behest_chat.conversations import store
    from behest_chat.state import chat as chat_module
    from behest_chat.state.turn_store import message_rows

    await tab.run("send", form_data={"prompt": "echo: first"})
    cid = (await tab.state()).conversation_id
    user_id = accounts.find_user("alice").user_id
    stored, release = threading.Event(), threading.Event()
    store_send = chat_module.store_send

    def held_store_send(*args: Any) -> Any:
        sent = store_send(*args)
        stored.set()
        release.wait(10)
        return sent

    monkeypatch.setattr(chat_module, "store_send", held_store_send)
    sending = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "echo: second"})
    )
    assert await asyncio.to_thread(stored.wait, 10)
    tab.path = f"/chat/{cid}"
    loading = await tab.processor.enqueue(tab.token, tab.event("load"))
    await asyncio.wait_for(loading, 10)  # the reload read the new question
    release.set()
    await asyncio.wait_for(sending.wait_all(), 20)
    await asyncio.wait_for(loading.wait_all(), 20)  # and what it started (a follower)
    state = await tab.state()
    assert shown_rows(state) == message_rows(store.window(user_id, cid)[0])
    assert [r["role"] for r in shown_rows(state)] == ["user", "assistant"] * 2
    assert state.last_row_id == shown_rows(state)[-1]["id"]


async def test_a_sends_request_goes_out_while_its_question_is_stored(
    tab: Tab, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:

    from behest_chat.state import chat as chat_module

    held, release = threading.Event(), threading.Event()
    store_send = chat_module.store_send

    def held_store_send(*args: Any) -> Any:
        held.set()
        release.wait(10)
        return store_send(*args)

    monkeypatch.setattr(chat_module, "store_send", held_store_send)
    before = gateway.stats()["chat_requests"]
    sending = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "echo: while stored"})
    )
    try:
        assert await asyncio.to_thread(held.wait, 10)
        await asyncio.to_thread(gateway.wait_for_stats, lambda s: s["chat_requests"] > before, 5)
    finally:
        release.set()
    await asyncio.wait_for(sending.wait_all(), 20)
    question, answer = shown_rows(await tab.state())
    assert question["content"] == "echo: while stored"
    assert (answer["status"], answer["content"]) == ("done", "while stored")


async def test_a_send_whose_question_cannot_be_stored_closes_the_request_it_sent(
    tab: Tab, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from behest_chat.state import chat as chat_module

    before = gateway.stats()
    gateway.set_fault(token_delay_ms=100, count=1)  # still streaming when the store fails

    def failing_store_send(*args: Any) -> Any:
        gateway.wait_for_stats(lambda s: s["chat_requests"] > before["chat_requests"], 5)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(chat_module, "store_send", failing_store_send)
    sending = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "long: 50"})
    )
    with pytest.raises(RuntimeError, match="the database went away"):
        await asyncio.wait_for(sending.wait_all(), 20)
    after = await asyncio.to_thread(
        gateway.wait_for_stats,
        lambda s: s["streams_open"] == 0 and s["client_disconnects"] > before["client_disconnects"],
        5,
    )
    assert after["streams_completed"] == before["streams_completed"]
    assert shown_rows(await tab.state()) == []


@pytest.mark.parametrize(
    "fault",
    [None, {"cut_after": 3}, {"status": 402, "code": "quota_exceeded"}],
    ids=["done", "cut", "quota"],
)
async def test_a_sends_ending_shows_what_a_reload_reads(
    tab: Tab, gateway, fault: dict[str, Any] | None
) -> None:
    """The answer's row at the end of a send is built from what was stored, not read back:
    it must be exactly the row a reload of the conversation shows."""
    from behest_chat.conversations import store
    from behest_chat.state.turn_store import message_rows, user_allowance

    await tab.run("send", form_data={"prompt": "echo: first"})
    if fault is not None:
        gateway.set_fault(**fault, count=1)
    await tab.run("send", form_data={"prompt": "Tell me about lists."})
    shown = await tab.state()
    assert shown.phase == ""
    user = accounts.find_user("alice")
    views, has_older = store.window(user.user_id, shown.conversation_id)
    assert shown_rows(shown) == message_rows(views)
    assert shown.has_older == has_older
    assert shown.allowance == user_allowance(user, shown.conversation_id).summary()
    reloaded = Tab(tab.processor, tab.manager, tab.recorder, tab.cookie)
    await reloaded.open(f"/chat/{shown.conversation_id}")
    assert shown_rows(await reloaded.state()) == shown_rows(shown)


async def test_an_ending_while_the_tab_shows_another_conversation_leaves_that_one_shown(
    tab: Tab, gateway
) -> None:
    """The tab opened another conversation while its answer streamed: the ending keeps
    that conversation on screen, and the sidebar and allowance are read again for it."""
    from behest_chat.state.turn_store import user_allowance

    await tab.run("send", form_data={"prompt": "echo: first"})
    streaming_in = (await tab.state()).conversation_id
    await tab.open()  # a new chat
    await tab.run("send", form_data={"prompt": "echo: other"})
    other = (await tab.state()).conversation_id
    await tab.open(f"/chat/{streaming_in}")
    sending = await _long_answer_streaming(tab, gateway, tokens=100, token_delay_ms=20)
    await tab.open(f"/chat/{other}")
    await asyncio.wait_for(sending.wait_all(), 30)

    state = await tab.state()
    assert state.conversation_id == other and state.phase == ""
    assert [m["content"] for m in shown_rows(state)] == ["echo: other", "other"]
    assert [c["id"] for c in state.conversations] == [streaming_in, other]
    assert state.allowance == user_allowance(accounts.find_user("alice"), other).summary()


async def test_a_send_while_another_process_writes_the_answer_is_refused(
    tab: Tab, gateway
) -> None:
    from behest_chat.conversations import store

    await tab.run("send", form_data={"prompt": "echo: first"})
    state = await tab.state()
    conversation_id, user_id = state.conversation_id, accounts.find_user("alice").user_id
    # Another worker is answering a question asked in this conversation from another tab.
    last = int(shown_rows(state)[-1]["id"])
    asked = store.add_user_message(user_id, conversation_id, "elsewhere", last)
    assert store.start_answer(user_id, conversation_id, asked.id, "another-run") is not None
    before = gateway.stats()["chat_requests"]
    await tab.run("send", form_data={"prompt": "echo: second"})
    state = await tab.state()
    assert state.notice_kind == "busy"
    assert gateway.stats()["chat_requests"] == before
    stored = [m.content for m in store.window(user_id, conversation_id)[0]]
    assert stored == ["echo: first", "first", "elsewhere", ""]
    assert "echo: second" in repr(tab.recorder.events())  # given back to the composer


async def test_signed_out_tab_is_redirected_and_nothing_is_sent(
    anonymous_tab: Tab, gateway
) -> None:
    before = gateway.stats()["chat_requests"]
    await anonymous_tab.run("send", form_data={"prompt": "hello"})
    assert gateway.stats()["chat_requests"] == before
    assert "/login" in repr([u.events for u in anonymous_tab.recorder.updates])


async def test_cut_stream_keeps_the_partial_reply_marked_with_retry(tab: Tab, gateway) -> None:
    gateway.set_fault(cut_after=5, count=1)
    await tab.run("send", form_data={"prompt": "Tell me about lists."})
    state = await tab.state()
    user, reply = shown_rows(state)
    assert user["content"] == "Tell me about lists."
    assert reply["status"] == "error" and reply["content"]
    assert "cut off" in reply["error"]

    await tab.run("retry", message_id=reply["id"])
    state = await tab.state()
    # The retried answer is a new version; the cut one stays reachable as version 1.
    assert [m["status"] for m in shown_rows(state)] == ["done", "done"]
    assert (shown_rows(state)[1]["version"], shown_rows(state)[1]["versions"]) == ("2", "2")
    await tab.run("show_version", message_id=shown_rows(state)[1]["id"], step=-1)
    state = await tab.state()
    assert [m["status"] for m in shown_rows(state)] == ["done", "error"]
    assert shown_rows(state)[1]["content"] == reply["content"]


async def test_a_reply_cut_after_a_list_marker_shows_no_empty_item(tab: Tab, gateway) -> None:
    from behest_chat.conversations import store

    # Frames: the role, then "Steps", ":", "\\n\\n1", ".", " one", "\\n2", ".", " two", "\\n3", ".".
    gateway.set_fault(cut_after=11, count=1)
    await tab.run("send", form_data={"prompt": "echo: Steps:\n\n1. one\n2. two\n3. three"})
    state = await tab.state()
    reply = shown_rows(state)[-1]
    assert reply["status"] == "error"
    assert reply["content"] == "Steps:\n\n1. one\n2. two\n"
    # What arrived is stored whole, so Continue goes on from it.
    views, _ = store.window(accounts.find_user("alice").user_id, state.conversation_id)
    assert views[-1].content == "Steps:\n\n1. one\n2. two\n3."


async def test_a_reply_cut_after_a_bare_heading_mark_says_no_text_arrived(
    tab: Tab, gateway
) -> None:
    from behest_chat.conversations import store

    # Frames: the role, then "#": a heading begun, nothing of it written.
    gateway.set_fault(cut_after=2, count=1)
    await tab.run("send", form_data={"prompt": "echo: # Title"})
    state = await tab.state()
    reply = shown_rows(state)[-1]
    assert (reply["status"], reply["content"]) == ("error", "")
    assert reply["error"] == "The answer was cut off. No text had arrived; retry."
    assert reply["retry"] == "1"
    views, _ = store.window(accounts.find_user("alice").user_id, state.conversation_id)
    assert views[-1].content == "#"


async def test_quota_error_is_explained_by_kind(tab: Tab, gateway) -> None:
    gateway.set_fault(status=402, code="quota_exceeded", count=1)
    await tab.run("send", form_data={"prompt": "hello"})
    reply = shown_rows(await tab.state())[-1]
    assert reply["status"] == "error" and "quota" in reply["error"]
    assert "Traceback" not in reply["error"]


async def test_stop_closes_the_upstream_stream_and_keeps_the_partial(tab: Tab, gateway) -> None:
    future = await _long_answer_streaming(tab, gateway)
    await tab.run("stop")
    await asyncio.wait_for(future.wait_all(), 10)
    reply = shown_rows(await tab.state())[-1]
    assert reply["status"] == "stopped" and reply["content"]

    def disconnected() -> bool:
        stats = gateway.stats()
        return stats["client_disconnects"] >= 1 and stats["streams_open"] == 0

    deadline = time.monotonic() + 1.0
    while not disconnected():
        assert time.monotonic() < deadline, "the gateway did not see the cancel within 1 s"
        await asyncio.sleep(0.02)  # polling the gateway, bounded by the deadline


async def test_stop_pressed_twice_still_ends_the_answer_as_stopped(tab: Tab, gateway) -> None:
    """The second Stop arrives while the turn stores the first one's ending: the turn is
    not interrupted again, and the answer is kept as stopped."""
    from behest_chat.conversations import store

    future = await _long_answer_streaming(tab, gateway)
    stops = [await tab.processor.enqueue(tab.token, tab.event("stop")) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(*(stop.wait_all() for stop in stops)), 10)
    await asyncio.wait_for(future.wait_all(), 10)
    reply = shown_rows(await tab.state())[-1]
    assert reply["status"] == "stopped" and reply["content"]
    stored = store.message_for_user(accounts.find_user("alice").user_id, int(reply["id"]))
    assert stored is not None and stored.status == "stopped"


async def test_stop_while_a_piece_is_being_sent_ends_the_answer_as_stopped_at_once(
    tab: Tab, gateway
) -> None:
    """Stop arrives while Reflex sends one of the turn's pieces to the page, outside the
    turn's own code: the cancel waits for the turn to have its hands back, and the turn
    ends as stopped then, not when it is collected later."""
    from behest_chat.conversations import store

    gateway.set_fault(token_delay_ms=50, count=1)
    sending_piece, release = asyncio.Event(), asyncio.Event()
    emit = tab.recorder.emit_update

    async def slow_emit(update: Any, token: str) -> None:
        puts = [e for e in getattr(update, "events", None) or [] if PUT.search(str(e.payload))]
        if puts and not sending_piece.is_set():
            sending_piece.set()
            await release.wait()  # the page's connection is slow
        await emit(update, token)

    tab.recorder.emit_update = slow_emit  # type: ignore[method-assign]
    sending = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "long: 400"})
    )
    await asyncio.wait_for(sending_piece.wait(), 10)
    await tab.run("stop")
    release.set()
    await asyncio.wait_for(sending.wait_all(), 10)
    reply = shown_rows(await tab.state())[-1]
    assert reply["status"] == "stopped"
    # What arrived is kept (the page may show less: a first "#" alone shows nothing).
    stored = store.message_for_user(accounts.find_user("alice").user_id, int(reply["id"]))
    assert stored is not None and stored.status == "stopped" and stored.content


def _keys(delta: dict[str, Any]) -> list[str]:
    return [k for substate in delta.values() for k in substate]


async def _streaming_answer_of_another_user() -> tuple[str, int, str]:
    """Bob's conversation with an answer still streaming: (conversation id, answer id, run)."""
    from behest_chat.conversations import store

    bob = accounts.register("bob", "Bob", "correct horse battery")
    conversation = store.create_conversation(bob.user_id, "Bob's question")
    question = store.add_user_message(bob.user_id, conversation.id, "Bob's question", None)
    assert question is not None and question.id is not None
    run_id = "bob-run"
    answer = store.start_answer(bob.user_id, conversation.id, question.id, run_id)
    assert answer is not None and answer.id is not None
    return conversation.id, answer.id, run_id


def _unchanged(answer_id: int) -> tuple[str, str, str]:
    from behest_chat.conversations.models import Message
    from behest_chat.db import session_scope

    with session_scope() as db:
        answer = db.get(Message, answer_id)
        assert answer is not None
        return answer.status, answer.content, answer.error_kind


REPORT = {"text": "Injected answer", "status": "done", "usage": {"completion_tokens": 3}}


async def _direct_turn_held(tab: Tab) -> tuple[Any, str, int]:
    """Alice sends a question browser-direct; once the server holds the turn open for the
    page's report, returns the send's event future, the conversation and the answer id."""
    from behest_chat.preferences import set_transport

    set_transport(accounts.find_user("alice").user_id, "direct")
    sending = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "A direct question"})
    )

    async def held() -> bool:
        return bool((await tab.state())._direct_run_id)

    await _until(held)
    state = await tab.state()
    cid, answer_id = state._direct_conversation_id, state._direct_answer_id
    tab.path = f"/chat/{cid}"  # where the page moved once it started the turn
    return sending, cid, answer_id


async def test_a_direct_turns_report_is_stored_and_shown_as_a_reload_shows_it(
    tab: Tab, gateway
) -> None:
    """A browser-direct turn: the page streams from Behest and reports back; the server
    stores the ending with its usage and shows exactly what a reload of the page shows."""
    from behest_chat.conversations import store
    from behest_chat.state.turn_store import message_rows

    user_id = accounts.find_user("alice").user_id
    sending, cid, answer_id = await _direct_turn_held(tab)
    await tab.run("finish_direct_turn", result=REPORT)
    await asyncio.wait_for(sending.wait_all(), 20)

    stored = store.message_for_user(user_id, answer_id)
    assert stored is not None and (stored.status, stored.content) == ("done", "Injected answer")
    state = await tab.state()
    assert not state.busy and not state.direct and state._direct_run_id == ""
    views, _ = store.window(user_id, cid)
    assert shown_rows(state) == message_rows(views)
    assert [c["id"] for c in state.conversations] == [cid]
    reloaded = Tab(tab.processor, tab.manager, tab.recorder, tab.cookie)
    await reloaded.open(f"/chat/{cid}")
    assert shown_rows(await reloaded.state()) == shown_rows(state)
    assert (await reloaded.state()).allowance == state.allowance


async def test_a_direct_report_after_sign_out_keeps_the_text_and_asks_to_sign_in(
    tab: Tab, gateway
) -> None:
    """The session ended while the page streamed (here: signed out in another tab): the
    answer is stored with what arrived, marked as a sign-in failure, and the tab goes to
    the login page."""
    from behest_chat.accounts.sessions import revoke
    from behest_chat.conversations import store

    sending, _, answer_id = await _direct_turn_held(tab)
    assert revoke(tab.cookie.split("=", 1)[1])
    seen = len(tab.recorder.updates)
    await tab.run("finish_direct_turn", result={**REPORT, "text": "Half an"})
    await asyncio.wait_for(sending.wait_all(), 20)

    stored = store.message_for_user(accounts.find_user("alice").user_id, answer_id)
    assert stored is not None
    assert (stored.status, stored.error_kind, stored.content) == ("error", "auth", "Half an")
    state = await tab.state()
    assert not state.signed_in and not state.direct and state._direct_run_id == ""
    redirects = [
        e.payload["path"]
        for u in tab.recorder.updates[seen:]
        for e in getattr(u, "events", None) or []
        if e.name == "_redirect"
    ]
    assert redirects == ["/login"]


async def test_a_direct_report_without_a_pending_turn_changes_nothing(tab: Tab) -> None:
    _, answer_id, _ = await _streaming_answer_of_another_user()
    before = _unchanged(answer_id)
    shown = shown_rows(await tab.state())
    await tab.run("finish_direct_turn", result=REPORT)
    assert _unchanged(answer_id) == before == ("streaming", "", "")
    assert shown_rows(await tab.state()) == shown


async def test_a_direct_report_for_a_conversation_of_another_user_changes_nothing(
    tab: Tab,
) -> None:
    conversation_id, answer_id, run_id = await _streaming_answer_of_another_user()

    async def point_at_bobs_turn() -> None:
        # As if this tab's server state held Bob's turn: the ownership check must hold.
        state = await tab.state()
        state._direct_conversation_id, state._direct_answer_id = conversation_id, answer_id
        state._direct_run_id, state.direct = run_id, True

    await point_at_bobs_turn()
    await tab.run("finish_direct_turn", result=REPORT)
    assert _unchanged(answer_id) == ("streaming", "", "")
    after = await tab.state()
    assert after._direct_run_id == "" and after.direct is False
    await point_at_bobs_turn()
    await tab.run("check_direct_page", running=False)
    assert _unchanged(answer_id) == ("streaming", "", "")
    assert (await tab.state())._direct_run_id == ""
