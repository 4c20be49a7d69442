"""GET /api/conversations/{id}/export over real HTTP: uvicorn and a migrated SQLite file."""

from __future__ import annotations

import httpx

from behest_chat.api.export import export_path
from behest_chat.conversations import store
from tests.fixtures.app_api import APP_ORIGIN, sign_up, user_id


def turn(owner: int, conversation_id: str, question: str, answer: str, **ending: str) -> int:
    """Store a question and its ended answer; the answer's id."""
    asked = store.ask(owner, conversation_id, question, "run-1")
    assert asked is not None and asked.answer.id is not None
    store.finish_answer(
        asked.answer.id, "run-1", status=ending.pop("status", "done"), content=answer, **ending
    )
    return asked.answer.id


def test_the_owner_downloads_the_conversation_as_markdown(api_server) -> None:
    client = sign_up(api_server, "alice")
    alice = user_id(api_server, "alice")
    conversation = store.create_conversation(alice, "Plans for Tuesday?")
    turn(alice, conversation.id, "Plans for Tuesday?", "Write the *report*.")
    turn(
        alice,
        conversation.id,
        "And Wednesday?",
        "Steps:\n\n1. one\n2.",
        status="stopped",
        error="Stopped. The part that arrived is kept.",
    )
    response = client.get(export_path(conversation.id))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"plans-for-tuesday.md\"; filename*=UTF-8''plans-for-tuesday.md"
    )
    assert response.headers["cache-control"] == "no-store"
    text = response.text
    assert text.startswith("# Plans for Tuesday?\n\nExported from behest-chat on ")
    # A stopped answer as the page shows it (no empty "2." item), with its reason.
    assert text.split(" UTC.\n\n", 1)[1] == (
        "## You\n\nPlans for Tuesday?\n\n## Assistant\n\nWrite the *report*.\n\n"
        "## You\n\nAnd Wednesday?\n\n## Assistant\n\nSteps:\n\n1. one\n\n"
        "> Stopped. The part that arrived is kept.\n"
    )


def test_another_version_picked_is_the_one_exported(api_server) -> None:
    client = sign_up(api_server, "carol")
    carol = user_id(api_server, "carol")
    conversation = store.create_conversation(carol, "Pick one")
    question = store.ask(carol, conversation.id, "Pick one", "run-1")
    assert question is not None
    store.finish_answer(question.answer.id, "run-1", status="done", content="first answer")
    again = store.start_answer(carol, conversation.id, question.question.id, "run-2")
    assert again is not None and again.id is not None
    store.finish_answer(again.id, "run-2", status="done", content="second answer")
    assert "second answer" in client.get(export_path(conversation.id)).text
    assert store.select_version(carol, again.id, -1)
    text = client.get(export_path(conversation.id)).text
    assert "first answer" in text and "second answer" not in text


def test_nobody_else_can_export_it(api_server) -> None:
    sign_up(api_server, "alice")
    alice = user_id(api_server, "alice")
    conversation = store.create_conversation(alice, "Private")
    turn(alice, conversation.id, "Private", "secret plans")
    bob = sign_up(api_server, "bob")
    for path in (export_path(conversation.id), export_path("not-an-id")):
        response = bob.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "no such conversation"}
    for cookies in ({}, {"behest_chat_session": "junk"}):
        response = httpx.get(api_server.url + export_path(conversation.id), cookies=cookies)
        assert response.status_code == 401
        assert "secret" not in response.text


def test_a_foreign_origin_is_refused(api_server) -> None:
    client = sign_up(api_server, "dave")
    dave = user_id(api_server, "dave")
    conversation = store.create_conversation(dave, "Mine")
    response = client.get(
        export_path(conversation.id), headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert client.get(export_path(conversation.id), headers={"Origin": APP_ORIGIN}).is_success
