"""The chat page in browser-direct mode: the page streams from the gateway, the app stores.

A user chooses "browser direct" on the settings page; the chat page then streams each answer
straight from the embedded gateway (a cross-origin request with a CORS preflight) into the
draft element, and the finished turn is stored like a relayed one.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser_direct import register
from tests.e2e.test_conversations import answers, ask, conversation_id, shot, wait_for

pytestmark = pytest.mark.e2e

CHAT_PATH = "/v1/chat/completions"
DRAFT = '[data-testid="direct-draft"]'


def words(text: str) -> str:
    """Text without Markdown marks and with single spaces: the draft shows the raw reply,
    the stored message renders it."""
    return " ".join(re.sub(r"[#*`_>]", " ", text).split())


def direct_draft_text(page: Page, at_least: int) -> str:
    """Wait until the page's direct draft shows `at_least` characters; return its text."""
    page.wait_for_function(
        "([selector, n]) => { const el = document.querySelector(selector);"
        " return el !== null && el.textContent.length >= n; }",
        arg=[DRAFT, at_least],
        timeout=20_000,
    )
    return page.locator(DRAFT).inner_text()


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


def test_stop_keeps_the_partial_of_a_direct_answer(page: Page, app_server) -> None:
    register(page)
    choose_direct(page)
    app_server.clear_faults()
    ask(page, "long: 400")
    partial = direct_draft_text(page, 40)
    # Rendered as markdown while it streams, like a relayed answer.
    expect(page.locator(f"{DRAFT} h2")).to_have_text("Streaming in practice")
    before = app_server.gateway_stats()["client_disconnects"]
    page.get_by_test_id("stop").click()
    stopped = answers(page, "stopped")
    expect(stopped).to_have_count(1, timeout=10_000)
    expect(answers(page)).to_have_count(1)
    expect(page.get_by_test_id("message-error")).to_have_text(
        "Stopped. The part that arrived is kept."
    )
    kept = stopped.inner_text()
    assert words(partial) in words(kept)
    expect(page.get_by_test_id("retry")).to_be_visible()
    wait_for(
        lambda: app_server.gateway_stats()["client_disconnects"] > before,
        timeout=2.0,
        what="the gateway saw the page's fetch close",
    )

    page.reload()
    expect(answers(page, "stopped")).to_have_count(1, timeout=15_000)
    assert words(partial) in words(answers(page, "stopped").inner_text())

    # Continue streams in the page too: the kept text shows first, then the rest.
    page.get_by_test_id("continue").click()
    expect(page.locator(f"{DRAFT} h2").first).to_have_text("Streaming in practice")
    done = answers(page, "done")
    expect(done).to_have_count(1, timeout=30_000)
    assert words(partial) in words(done.inner_text())


def test_a_reload_mid_direct_answer_ends_it_as_interrupted(page: Page, app_server) -> None:
    register(page)
    choose_direct(page)
    app_server.clear_faults()
    ask(page, "long: 400")
    direct_draft_text(page, 20)
    cid = conversation_id(page)
    page.reload()
    reloaded_at = time.monotonic()
    assert cid in page.url
    interrupted = answers(page, "interrupted")
    expect(interrupted).to_have_count(1, timeout=5_000)
    assert time.monotonic() - reloaded_at < 5.0
    expect(answers(page, "streaming")).to_have_count(0)
    expect(page.get_by_test_id("message-error")).to_have_attribute("data-kind", "interrupted")
    expect(page.get_by_test_id("retry")).to_be_visible()
    expect(page.get_by_test_id("send")).to_be_visible()
