"""The chat page in browser-direct mode: the page streams from the gateway, the app stores.

A user chooses "browser direct" on the settings page; the chat page then streams each answer
straight from the embedded gateway (a cross-origin request with a CORS preflight) into the
draft element, and the finished turn is stored like a relayed one.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser_direct import register
from tests.e2e.test_conversations import answers, ask, conversation_id, shot

pytestmark = pytest.mark.e2e

CHAT_PATH = "/v1/chat/completions"


def choose_direct(page: Page) -> None:
    page.goto("/settings")
    page.get_by_test_id("transport-direct").click()
    expect(page.get_by_test_id("transport")).to_have_attribute("data-value", "direct")
    page.goto("/chat")
    page.wait_for_function("() => window.behestDirect !== undefined")


def test_a_direct_answer_streams_in_the_page_and_is_stored(page: Page, app_server) -> None:
    register(page)
    choose_direct(page)
    before = app_server.gateway_stats()
    ask(page, "How do I read a file in Python?")
    draft = page.get_by_test_id("direct-draft")
    expect(draft).not_to_be_empty(timeout=15_000)
    expect(answers(page, "done")).to_have_count(1, timeout=30_000)
    expect(draft).to_have_count(0)
    after = app_server.gateway_stats()
    # One chat request from the page: its CORS preflight and the POST, both counted.
    assert after["chat_requests"] - before["chat_requests"] == 1
    assert (
        after["requests_by_path"][CHAT_PATH] - before["requests_by_path"].get(CHAT_PATH, 0) == 2
    )
    shown = answers(page, "done").inner_text()
    assert shown.strip()
    expect(page.get_by_test_id("message-tokens")).to_contain_text("tokens")
    cid = conversation_id(page)
    shot(page, "browser-direct-chat")

    page.reload()
    expect(answers(page, "done")).to_have_count(1, timeout=15_000)
    assert answers(page, "done").inner_text() == shown
    assert cid in page.url
    assert app_server.gateway_stats()["chat_requests"] == after["chat_requests"]
