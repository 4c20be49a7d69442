"""Token budgets are enforced before anything is sent, and the allowance is visible first."""

from __future__ import annotations

import pytest

from behest_chat.accounts import service as accounts
from behest_chat.conversations import budgets
from behest_chat.settings import get_settings
from behest_chat.state.turn_store import MAX_QUESTION_CHARS
from tests.integration.test_chat_state import app_env, shown_rows  # noqa: F401  (fixture)
from tests.integration.test_conversations_lifecycle import alice, server  # noqa: F401


def restored_text(server, tab) -> list[str]:  # noqa: F811
    return [
        e.payload.get("value") for e in server.recorder.events(tab.token) if e.name == "_set_value"
    ]


async def test_allowance_is_shown_before_the_first_send(server, alice) -> None:  # noqa: F811
    tab = await server.tab(alice)
    assert (await tab.state()).allowance == "50,000 of 50,000 tokens left today (free)"


async def test_over_the_daily_budget_nothing_is_sent(server, alice, gateway) -> None:  # noqa: F811
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "echo: a first, cheap answer"})
    state = await tab.state()
    spent = int(shown_rows(state)[-1]["tokens"].split()[0])
    budgets.set_user_budget(alice.user_id, daily_tokens=spent + 5, conversation_cap=None)
    await tab.open(f"/chat/{state.conversation_id}/")
    assert (await tab.state()).allowance == f"5 of {spent + 5:,} tokens left today (free)"

    requests = gateway.stats()["chat_requests"]
    await tab.run("send", form_data={"prompt": "a question that does not fit"})
    state = await tab.state()
    assert gateway.stats()["chat_requests"] == requests, "a request was sent over budget"
    assert state.notice_kind == "daily_budget"
    # The branch so far with the question needs more than the whole day's budget: waiting
    # for the reset would not help, so the notice says to shorten it instead.
    assert f"{spent:,} of {spent + 5:,} tokens" in state.notice
    assert "whole daily budget" in state.notice and "00:00 UTC" not in state.notice
    assert len(shown_rows(state)) == 2, "the refused question was not stored"
    assert "a question that does not fit" in restored_text(server, tab)
    # Retry and Regenerate are sends too.
    await tab.run("regenerate", message_id=shown_rows(state)[-1]["id"])
    assert gateway.stats()["chat_requests"] == requests
    assert shown_rows(await tab.state())[-1]["versions"] == "1"


async def test_the_tier_budget_comes_from_the_settings(server, alice, gateway, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("APP_DAILY_TOKEN_BUDGET_FREE", "10")
    monkeypatch.setenv("APP_DAILY_TOKEN_BUDGET_PRO", "100000")
    get_settings.cache_clear()
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "Tell me about lists, please, in some detail."})
    state = await tab.state()
    assert state.notice_kind == "daily_budget" and "free tier" in state.notice
    assert gateway.stats()["chat_requests"] == 0

    accounts.set_tier("alice", "pro")
    pro_tab = await server.tab(accounts.find_user("alice"))
    assert (await pro_tab.state()).allowance == "100,000 of 100,000 tokens left today (pro)"
    await pro_tab.run("send", form_data={"prompt": "Tell me about lists, please, in some detail."})
    assert shown_rows(await pro_tab.state())[-1]["status"] == "done"


async def test_a_conversation_cap_stops_one_conversation_only(
    server,  # noqa: F811
    alice,  # noqa: F811
    gateway,
    monkeypatch,
) -> None:
    monkeypatch.setenv("APP_CONVERSATION_TOKEN_CAP", "150")
    get_settings.cache_clear()
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "Tell me about lists."})  # ~100 tokens
    state = await tab.state()
    assert shown_rows(state)[-1]["status"] == "done"
    assert "left in this chat" in state.allowance
    await tab.run("send", form_data={"prompt": "And about tuples, in the same detail?"})
    state = await tab.state()
    assert state.notice_kind == "conversation_cap" and "Start a new chat" in state.notice
    assert gateway.stats()["chat_requests"] == 1

    await tab.open("/chat/")
    await tab.run("send", form_data={"prompt": "And about tuples, in the same detail?"})
    state = await tab.state()
    assert shown_rows(state)[-1]["status"] == "done" and gateway.stats()["chat_requests"] == 2


@pytest.mark.parametrize("value", ["-1", "many"])
def test_bad_budget_overrides_are_refused_by_the_cli(app_env, value) -> None:  # noqa: F811
    from behest_chat.usage.__main__ import main

    accounts.register("dora", "Dora", "correct horse battery")
    with pytest.raises(SystemExit) as exited:
        main(["set-budget", "dora", "--daily", value])
    assert exited.value.code == 2


async def test_a_question_over_the_size_limit_is_refused_and_kept(server, alice, gateway) -> None:  # noqa: F811
    """The page holds such a question back itself (assets/composer.js); the server refuses
    one that arrives anyway, a send or an edit, and the text goes back into the box."""
    tab = await server.tab(alice)
    text = "echo: " + "x" * MAX_QUESTION_CHARS
    await tab.run("send", form_data={"prompt": text})
    state = await tab.state()
    assert state.notice_kind == "too_long"
    assert state.notice == (
        f"This question is {len(text):,} characters long; one message holds at most "
        "100,000. Shorten it, or send it in parts."
    )
    assert restored_text(server, tab) == [text]
    assert gateway.stats()["chat_requests"] == 0 and shown_rows(state) == []

    await tab.run("send", form_data={"prompt": "echo: a question that fits"})
    state = await tab.state()
    assert state.notice == "" and len(shown_rows(state)) == 2
    question = shown_rows(state)[0]["id"]
    await tab.run("start_edit", message_id=question)
    await tab.run("submit_edit", form_data={"text": text})
    state = await tab.state()
    assert state.notice_kind == "too_long" and state.editing_id == question
    assert gateway.stats()["chat_requests"] == 1
