"""Two users never see or touch each other's conversations, even with guessed ids in events.

Bob's tab sends every handler the ids of Alice's conversation and messages, as a forged
event would; nothing of Alice's changes, nothing of hers reaches Bob's state or deltas, and
no request goes to the gateway on her behalf.
"""

from __future__ import annotations

import pytest

from behest_chat.accounts import service as accounts
from behest_chat.conversations import store
from tests.integration.test_chat_state import app_env, shown_rows  # noqa: F401  (fixture)
from tests.integration.test_conversations_lifecycle import alice, server  # noqa: F401


@pytest.fixture
def bob(app_env):  # noqa: F811
    return accounts.register("bob", "Bob", "correct horse battery")


async def test_guessed_ids_in_urls_and_events_reach_nothing(server, alice, bob, gateway) -> None:  # noqa: F811
    alice_tab = await server.tab(alice)
    await alice_tab.run("send", form_data={"prompt": "echo: alice's secret plan"})
    mine = await alice_tab.state()
    conversation_id = mine.conversation_id
    question_id, answer_id = (m["id"] for m in shown_rows(mine))
    requests = gateway.stats()["chat_requests"]

    bob_tab = await server.tab(bob, f"/chat/{conversation_id}/")
    state = await bob_tab.state()
    assert state.missing and shown_rows(state) == [] and state.conversation_id == ""
    assert state.conversations == []

    for handler, payload in [
        ("start_rename", {"conversation_id": conversation_id}),
        ("save_rename", {"form_data": {"title": "owned"}}),
        ("ask_delete", {"conversation_id": conversation_id}),
        ("confirm_delete", {}),
        ("show_version", {"message_id": answer_id, "step": -1}),
        ("retry", {"message_id": answer_id}),
        ("regenerate", {"message_id": answer_id}),
        ("continue_answer", {"message_id": answer_id}),
        ("start_edit", {"message_id": question_id}),
        ("submit_edit", {"form_data": {"text": "echo: hijacked"}}),
        ("load_older", {}),
        ("stop", {}),
        ("remember_draft", {"value": "bob was here"}),
    ]:
        await bob_tab.run(handler, **payload)
    state = await bob_tab.state()
    assert state.rename_id == state.delete_id == state.editing_id == ""
    assert shown_rows(state) == [] and state.conversations == []
    assert gateway.stats()["chat_requests"] == requests, "a request was sent for Bob"

    seen_by_bob = repr(server.recorder.deltas(bob_tab.token))
    assert "secret plan" not in seen_by_bob
    # The id is in Bob's own URL (router data); no state of the app ever carried it back.
    app_deltas = [
        sub
        for delta in server.recorder.deltas(bob_tab.token)
        for name, sub in delta.items()
        if "chat_state" in name
    ]
    assert conversation_id not in repr(app_deltas)

    kept = store.get_conversation(alice.user_id, conversation_id)
    assert kept is not None and kept.title == "echo: alice's secret plan" and kept.draft == ""
    views, _ = store.window(alice.user_id, conversation_id)
    assert [(v.content, v.versions) for v in views] == [
        ("echo: alice's secret plan", 1),
        ("alice's secret plan", 1),
    ]

    # Bob's own conversation is his alone, and searching finds only his.
    await bob_tab.open("/chat/")
    await bob_tab.run("send", form_data={"prompt": "echo: bob's plan"})
    await bob_tab.run("set_search", value="plan")
    assert [c["title"] for c in (await bob_tab.state()).conversations] == ["echo: bob's plan"]
    await alice_tab.run("set_search", value="plan")
    assert [c["title"] for c in (await alice_tab.state()).conversations] == [
        "echo: alice's secret plan"
    ]


async def test_usage_page_shows_only_the_users_own_figures(server, alice, bob, gateway) -> None:  # noqa: F811
    alice_tab = await server.tab(alice)
    await alice_tab.run("send", form_data={"prompt": "echo: one two three"})
    bob_tab = await server.tab(bob)
    await bob_tab.run("send", form_data={"prompt": "echo: four"})

    usage_alice = await _usage(alice_tab)
    usage_bob = await _usage(bob_tab)
    alice_answer = shown_rows(await alice_tab.state())[-1]
    assert usage_alice.total_requests == usage_bob.total_requests == 1
    assert usage_alice.total_tokens == int(alice_answer["tokens"].split()[0].replace(",", ""))
    assert usage_alice.total_tokens != usage_bob.total_tokens
    assert [c["title"] for c in usage_bob.by_conversation] == ["echo: four"]
    csv_events = await _download(bob_tab)
    assert "echo: four" in csv_events and "one two three" not in csv_events


async def _usage(tab):
    from behest_chat.state.usage import UsageState

    tab.path = "/usage/"
    await _run_usage(tab, "load")
    root = await tab.manager.get_state(_token(tab, UsageState))
    return await root.get_state(UsageState)


async def _download(tab) -> str:
    import base64

    await _run_usage(tab, "download_csv")
    (download,) = [e for e in tab.recorder.events(tab.token) if e.name == "_download"]
    url = download.payload["url"]
    assert url.startswith("data:text/csv;base64,")
    return base64.b64decode(url.split(",", 1)[1]).decode()


async def _run_usage(tab, handler: str) -> None:
    import asyncio

    from reflex_base.event import Event

    from behest_chat.state.usage import UsageState

    event = Event(
        name=f"{UsageState.get_full_name()}.{handler}",
        payload={},
        router_data=tab.event("load").router_data,
    )
    future = await tab.processor.enqueue(tab.token, event)
    await asyncio.wait_for(future.wait_all(), 10)


def _token(tab, cls):
    from reflex.istate.manager.token import BaseStateToken

    return BaseStateToken(ident=tab.token, cls=cls)
