"""One turn lifecycle, through Reflex's real event processor against the real gateway and DB.

Every way a turn can end — done, Stop, 401, 402, 429, 5xx, cut stream, idle timeout, a
server that went away — ends the same way: the question and the text that arrived are in
the database, the answer is marked with the reason, and Retry (or Continue) is offered
where it makes sense. Faults come from the gateway's fault switch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from behest_chat import services
from behest_chat.accounts import service as accounts
from behest_chat.accounts.models import utcnow
from behest_chat.accounts.sessions import SESSION_COOKIE, SessionUser, create_session
from behest_chat.conversations import store
from behest_chat.conversations.models import Message
from behest_chat.db import session_scope
from behest_chat.live_draft import unfinished_text
from behest_chat.settings import get_settings
from tests.integration.test_chat_state import (  # noqa: F401  (app_env is a fixture)
    Tab,
    app_env,
    page_texts,
    pieces,
    shown_rows,
)


class Recorder:
    """The socket.io stand-in: every update, with the tab token it was meant for."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, Any]] = []

    async def emit_update(self, update: Any, token: str) -> None:
        self.updates.append((token, update))

    def deltas(self, token: str) -> list[dict[str, Any]]:
        return [u.delta for t, u in self.updates if t == token and getattr(u, "delta", None)]

    def events(self, token: str, since: int = 0) -> list[Any]:
        """Events for ``token`` from the ``since``-th update on."""
        return [e for t, u in self.updates[since:] if t == token for e in (u.events or [])]


class Server:
    """One app process as the processor sees it: tabs share its state manager."""

    def __init__(self, processor: Any, manager: Any, recorder: Recorder) -> None:
        self.processor, self.manager, self.recorder = processor, manager, recorder

    async def tab(self, user: SessionUser, path: str = "/chat/") -> Tab:
        tab = Tab(
            self.processor, self.manager, self.recorder, f"{SESSION_COOKIE}={create_session(user)}"
        )
        await tab.open(path)
        return tab


@pytest.fixture
async def server(app_env) -> AsyncIterator[Server]:  # noqa: F811
    from reflex.istate.manager.memory import StateManagerMemory
    from reflex_base.event.processor.base_state_processor import BaseStateEventProcessor
    from reflex_base.registry import RegistrationContext

    from behest_chat.behest_chat import app

    RegistrationContext.set(app._registration_context)
    manager, recorder = StateManagerMemory(), Recorder()
    processor = BaseStateEventProcessor(graceful_shutdown_timeout=5).configure(
        state_manager=manager, event_namespace=recorder
    )
    async with processor:
        yield Server(processor, manager, recorder)
    if services._client is not None:
        await services._client.aclose()
        services._client = None


@pytest.fixture
def alice(app_env) -> SessionUser:  # noqa: F811
    return accounts.register("alice", "Alice", "correct horse battery")


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        await asyncio.sleep(0.02)  # polling shared state, bounded by the deadline


def answers(user: SessionUser, conversation_id: str) -> list[Message]:
    with session_scope() as db:
        return list(
            db.exec(
                sa.select(Message)
                .where(Message.conversation_id == conversation_id, Message.role == "assistant")
                .order_by(Message.id)
            ).scalars()
        )


def phases(server: Server, tab: Tab) -> list[str]:
    return [
        value
        for delta in server.recorder.deltas(tab.token)
        for sub in delta.values()
        for key, value in sub.items()
        if key.startswith("phase")
    ]


async def test_429_counts_down_from_retry_after_then_succeeds(server, alice, gateway) -> None:
    gateway.set_fault(status=429, code="rate_limited", retry_after=1)
    tab = await server.tab(alice)
    started = time.monotonic()
    await tab.run("send", form_data={"prompt": "Tell me about lists."})
    state = await tab.state()
    assert [m["status"] for m in shown_rows(state)] == ["done", "done"]
    assert time.monotonic() - started >= 1.0, "the retry waited for Retry-After"
    assert "rate_limited" in phases(server, tab)
    retry_in = [
        v
        for d in server.recorder.deltas(tab.token)
        for s in d.values()
        for k, v in s.items()
        if k.startswith("retry_in")
    ]
    counting = retry_in[retry_in.index(1) :]
    assert counting[:2] == [1, 0], retry_in
    stats = gateway.stats()
    assert stats["responses_by_status"].get("429") == 1 and stats["streams_completed"] == 1


async def test_402_names_tier_limit_usage_and_reset_and_nothing_more_is_sent(
    server, alice, gateway
) -> None:
    gateway.set_fault(
        status=402,
        code="quota_exceeded",
        message="daily token limit of the free tier reached",
        details={
            "tier": "free",
            "limit": {"tokens_per_day": 50000},
            "usage": {"tokens_today": 50123},
        },
    )
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "hello"})
    state = await tab.state()
    _question, reply = shown_rows(state)
    assert reply["status"] == "error" and reply["kind"] == "quota"
    assert "daily quota of the free tier is reached: 50,123 of 50,000 tokens" in reply["error"]
    assert "00:00 UTC (in " in reply["error"]
    assert reply["retry"] == "" and reply["continue"] == ""
    assert reply["trace_id"].startswith("tr_")
    sent = gateway.stats()["chat_requests"]
    await tab.run("send", form_data={"prompt": "and again"})
    state = await tab.state()
    assert gateway.stats()["chat_requests"] == sent, "a second request went out"
    assert state.notice_kind == "quota" and "free tier" in state.notice
    assert len(shown_rows(state)) == 2, "the refused question was not stored"
    assert {"name": "_set_value", "value": "and again"} in [
        {"name": e.name, "value": e.payload.get("value")} for e in server.recorder.events(tab.token)
    ]


async def test_a_401_is_retried_once_with_a_new_token(server, alice, gateway) -> None:
    gateway.set_fault(status=401, code="invalid_token")
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "hello"})
    reply = shown_rows(await tab.state())[-1]
    assert reply["status"] == "done" and reply["error"] == ""
    stats = gateway.stats()
    assert stats["responses_by_status"].get("401") == 1 and stats["mints"] == 2


async def test_5xx_keeps_the_partial_and_retry_completes(server, alice, gateway) -> None:
    gateway.set_fault(status=503, count=3)  # the client's two retries fail as well
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "hello"})
    reply = shown_rows(await tab.state())[-1]
    assert (reply["status"], reply["kind"], reply["retry"]) == ("error", "server", "1")
    await tab.run("retry", message_id=reply["id"])
    state = await tab.state()
    assert shown_rows(state)[-1]["status"] == "done" and shown_rows(state)[-1]["versions"] == "2"


async def test_an_idle_stream_times_out_keeps_the_partial_and_closes_upstream(
    server, alice, gateway, monkeypatch
) -> None:
    monkeypatch.setenv("APP_STREAM_IDLE_TIMEOUT_S", "1")
    get_settings.cache_clear()
    gateway.set_fault(token_delay_ms=2500)  # the first token arrives, then nothing for 2.5 s
    tab = await server.tab(alice)
    before = gateway.stats()["client_disconnects"]
    await tab.run("send", form_data={"prompt": "long: 50"})
    reply = shown_rows(await tab.state())[-1]
    assert (reply["status"], reply["kind"]) == ("error", "timeout")
    assert reply["retry"] == "1" and reply["continue"] == ""  # nothing arrived to continue
    gateway.wait_for_stats(lambda s: s["client_disconnects"] > before and s["streams_open"] == 0)


async def test_stop_marks_the_answer_stopped_and_continue_extends_it(
    server, alice, gateway
) -> None:
    gateway.set_fault(token_delay_ms=40)
    tab = await server.tab(alice)
    running = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "long: 300"})
    )

    async def streaming() -> bool:
        return any(len(t) > 20 for t in page_texts(server.recorder.events(tab.token)).values())

    await until(streaming, what="some text arrived")
    await tab.run("stop")
    await asyncio.wait_for(running.wait_all(), 10)
    state = await tab.state()
    reply = shown_rows(state)[-1]
    assert (reply["status"], reply["continue"], reply["retry"]) == ("stopped", "1", "1")
    partial = reply["content"]
    stored = answers(alice, state.conversation_id)[-1]
    assert (stored.status, stored.stop_requested) == ("stopped", True)
    # Stored whole; shown without a last line that would render what never arrived.
    assert stored.content.startswith(partial) and unfinished_text(stored.content) == partial
    assert stored.usage_estimated and stored.completion_tokens > 0

    await tab.run("continue_answer", message_id=reply["id"])
    state = await tab.state()
    reply = shown_rows(state)[-1]
    assert reply["status"] == "done" and reply["content"].startswith(partial)
    assert len(reply["content"]) > len(partial) and reply["versions"] == "1"


async def test_a_turn_whose_server_went_away_is_interrupted_with_retry(
    server, alice, gateway
) -> None:
    chat = store.create_conversation(alice.user_id)
    question = store.add_user_message(alice.user_id, chat.id, "What is a list?", None)
    dead = store.start_answer(alice.user_id, chat.id, question.id, "gone-process-run")
    store.save_progress(dead.id, "gone-process-run", "A list holds")
    with session_scope() as db:  # the heartbeat stopped ten seconds ago
        db.exec(
            sa.update(Message)
            .where(Message.id == dead.id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=10))
        )
    tab = await server.tab(alice, f"/chat/{chat.id}/")
    state = await tab.state()
    reply = shown_rows(state)[-1]
    assert (reply["status"], reply["content"]) == ("interrupted", "A list holds")
    assert reply["retry"] == "1" and reply["continue"] == "1" and not state.busy
    await tab.run("retry", message_id=reply["id"])
    state = await tab.state()
    assert shown_rows(state)[-1]["status"] == "done" and shown_rows(state)[-1]["versions"] == "2"


async def test_the_same_tab_reloaded_mid_answer_keeps_streaming(server, alice, gateway) -> None:
    gateway.set_fault(token_delay_ms=20)
    tab = await server.tab(alice)
    running = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "long: 90"})
    )

    async def partial() -> str:
        state = await tab.state()
        texts = page_texts(server.recorder.events(tab.token))
        return state.conversation_id if any(len(t) > 30 for t in texts.values()) else ""

    conversation_id = await until(partial, what="a partial answer")
    before_reload = len(server.recorder.updates)
    await tab.open(f"/chat/{conversation_id}/")  # the page loads again on the same state
    state = await tab.state()
    assert state.phase == "streaming"
    assert [m["role"] for m in shown_rows(state)] == ["user"]
    await asyncio.wait_for(running.wait_all(), 20)
    # The reloaded page starts empty: what it was sent since is the text so far, then more.
    text = page_texts(server.recorder.events(tab.token, since=before_reload))[state.live_answer_id]
    state = await tab.state()
    assert [m["status"] for m in shown_rows(state)] == ["done", "done"]
    assert state.phase == ""
    assert len(text) > 30 and shown_rows(state)[-1]["content"].startswith(text)


async def test_another_tab_follows_a_running_answer_from_the_database(
    server, alice, gateway
) -> None:
    gateway.set_fault(token_delay_ms=15)
    first = await server.tab(alice)
    running = await first.processor.enqueue(
        first.token, first.event("send", form_data={"prompt": "long: 200"})
    )

    async def started() -> str:
        state = await first.state()
        return (
            state.conversation_id
            if any(page_texts(server.recorder.events(first.token)).values())
            else ""
        )

    conversation_id = await until(started, what="the first tab streams")
    second = await server.tab(alice)
    second.path = f"/chat/{conversation_id}/"
    # The page's load starts a follower, which runs until the answer ends: do not wait for it.
    opening = await second.processor.enqueue(second.token, second.event("load"))

    async def following() -> bool:
        state = await second.state()
        shown = page_texts(server.recorder.events(second.token)).get(state.live_answer_id)
        return state.phase == "streaming" and bool(shown)

    await until(following, what="the second tab shows the answer in progress")
    assert [m["role"] for m in shown_rows(await second.state())] == ["user"]

    async def followed() -> bool:
        state = await second.state()
        return not state.busy and [m["status"] for m in shown_rows(state)] == ["done", "done"]

    await until(followed, timeout=20, what="the second tab saw the answer end")
    await asyncio.wait_for(running.wait_all(), 20)
    await asyncio.wait_for(opening.wait_all(), 5)
    # The follower sent the text so far, then only what the database row added since.
    followed_pieces = [p for p in pieces(server.recorder.events(second.token)) if p[2]]
    assert len(followed_pieces) >= 2
    assert [at for _, at, _ in followed_pieces] == sorted({at for _, at, _ in followed_pieces})
    final = shown_rows(await first.state())[-1]["content"]
    assert shown_rows(await second.state())[-1]["content"] == final
    # The answer's tokens count in the allowance both tabs show.
    assert (await second.state()).allowance == (await first.state()).allowance
    assert final.startswith(
        page_texts(server.recorder.events(second.token))[
            int(shown_rows(await second.state())[-1]["id"])
        ]
    )


async def test_regenerate_and_edit_keep_earlier_versions(server, alice, gateway) -> None:
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "echo: first answer"})
    state = await tab.state()
    await tab.run("regenerate", message_id=shown_rows(state)[1]["id"])
    state = await tab.state()
    assert [m["version"] + "/" + m["versions"] for m in shown_rows(state)] == ["1/1", "2/2"]

    await tab.run("start_edit", message_id=shown_rows(state)[0]["id"])
    await tab.run("submit_edit", form_data={"text": "echo: edited question"})
    state = await tab.state()
    assert [m["content"] for m in shown_rows(state)] == ["echo: edited question", "edited question"]
    assert shown_rows(state)[0]["versions"] == "2"
    await tab.run("show_version", message_id=shown_rows(state)[0]["id"], step=-1)
    state = await tab.state()
    assert [m["content"] for m in shown_rows(state)] == ["echo: first answer", "first answer"]
    assert shown_rows(state)[1]["versions"] == "2"


async def test_a_second_send_while_streaming_is_refused(server, alice, gateway) -> None:
    gateway.set_fault(token_delay_ms=20)
    tab = await server.tab(alice)
    running = await tab.processor.enqueue(
        tab.token, tab.event("send", form_data={"prompt": "long: 60"})
    )
    await until(lambda: gateway.stats()["streams_open"] == 1, what="the stream opened")
    await tab.run("send", form_data={"prompt": "second"})
    await asyncio.wait_for(running.wait_all(), 20)
    assert gateway.stats()["chat_requests"] == 1
    assert next(m["content"] for m in shown_rows(await tab.state())) == "long: 60"


def test_unique_ids_are_not_guessable() -> None:
    ids = {store.new_conversation_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and uuid.UUID(hex=i).version == 4 for i in ids)
