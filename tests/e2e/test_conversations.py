"""Conversations in headless Chromium: sidebar, drafts, long histories, usage, layouts.

Runs against the shared app (`app_server`, started as `make run` starts it). Users are
registered through the app's own API for speed; a 1,000-turn conversation is written
straight into the app's SQLite file, as if it had been had over weeks.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from behest_chat.api.export import export_path

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
ARTIFACTS_VIEWPORT = {"width": 1200, "height": 850}


def sign_up(page: Page, base: str) -> str:
    """Register a fresh user through the API (the context keeps the cookie); open /chat."""
    username = f"c{secrets.token_hex(4)}"
    response = page.request.post(
        f"{base}/api/auth/register",
        data={"username": username, "display_name": f"User {username}", "password": PASSWORD},
        headers={"Origin": base},
    )
    assert response.ok, response.text()
    page.goto(f"{base}/chat")
    expect(page.get_by_test_id("display-name")).to_have_text(f"User {username}")
    return username


def ask(page: Page, question: str) -> None:
    """Type a question and send it with Enter."""
    box = page.get_by_test_id("composer-input")
    box.fill(question)
    box.press("Enter")


def answers(page: Page, status: str | None = None):
    selector = '[data-testid="message"][data-role="assistant"]'
    if status:
        selector += f'[data-status="{status}"]'
    return page.locator(selector)


def ask_and_wait(page: Page, question: str, count: int = 1) -> None:
    """Ask and wait until `count` finished answers are on the page."""
    ask(page, question)
    expect(answers(page, "done")).to_have_count(count, timeout=30_000)


def conversation_id(page: Page) -> str:
    expect(page).to_have_url(re.compile(r"/chat/[0-9a-f]{32}/?$"))
    return re.search(r"/chat/([0-9a-f]{32})", page.url).group(1)


def items(page: Page):
    return page.get_by_test_id("conversation-item")


def shot(page: Page, name: str) -> None:
    from tests.fixtures.app import ROOT

    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-artifacts" / f"{name}.png"), full_page=True)


def new_context(browser: Browser, app_server, **options) -> BrowserContext:
    options.setdefault("viewport", ARTIFACTS_VIEWPORT)
    context = browser.new_context(base_url=app_server.url, **options)
    context.on("weberror", lambda error: pytest.fail(f"error in the page: {error.error}"))
    return context


def test_sidebar_titles_rename_delete_search_and_drafts(page: Page, app_server) -> None:
    sign_up(page, app_server.url)
    expect(page.get_by_test_id("remaining-budget")).to_have_text(
        "50,000 of 50,000 tokens left today (free)"
    )
    ask_and_wait(page, "echo: Lists keep their order")
    first = conversation_id(page)
    expect(items(page)).to_have_count(1)
    expect(items(page).first).to_have_attribute("data-current", "true")
    expect(items(page).first).to_contain_text("echo: Lists keep their order")
    expect(page.get_by_test_id("remaining-budget")).not_to_have_text(
        "50,000 of 50,000 tokens left today (free)"
    )

    page.get_by_test_id("new-chat").click()
    expect(page).to_have_url(re.compile(r"/chat/?$"))
    expect(page.get_by_test_id("empty-chat")).to_be_visible()
    ask_and_wait(page, "echo: Tuples do not change")
    second = conversation_id(page)
    assert second != first
    expect(items(page)).to_have_count(2)
    expect(items(page).first).to_have_attribute("data-conversation-id", second)

    # A draft stays with its conversation while the user looks elsewhere.
    page.get_by_test_id("composer-input").fill("half a thought about tuples")
    page.locator(f'[data-conversation-id="{first}"] [data-testid="conversation-link"]').click()
    expect(page).to_have_url(re.compile(first))
    expect(page.get_by_test_id("message").first).to_have_text("echo: Lists keep their order")
    expect(page.get_by_test_id("composer-input")).to_have_value("")
    page.locator(f'[data-conversation-id="{second}"] [data-testid="conversation-link"]').click()
    expect(page.get_by_test_id("composer-input")).to_have_value("half a thought about tuples")

    # Rename survives a reload and is not replaced by the automatic title.
    page.locator(f'[data-conversation-id="{first}"] [data-testid="rename"]').click()
    page.get_by_test_id("rename-input").fill("My list notes")
    page.get_by_test_id("rename-save").click()
    expect(page.locator(f'[data-conversation-id="{first}"]')).to_contain_text("My list notes")
    page.reload()
    expect(page.locator(f'[data-conversation-id="{first}"]')).to_contain_text("My list notes")
    expect(page.get_by_test_id("composer-input")).to_have_value("half a thought about tuples")

    # Search matches titles and message text.
    page.get_by_test_id("search").fill("do not change")
    expect(items(page)).to_have_count(1)
    expect(items(page).first).to_have_attribute("data-conversation-id", second)
    page.get_by_test_id("search").fill("nothing like this")
    expect(page.get_by_test_id("conversations-empty")).to_have_text("No conversation matches.")
    page.get_by_test_id("search").fill("")
    expect(items(page)).to_have_count(2)

    # Delete asks first; Cancel keeps it, Delete removes it and leaves the deleted page.
    page.locator(f'[data-conversation-id="{second}"] [data-testid="delete"]').click()
    expect(page.get_by_role("alertdialog")).to_contain_text("Tuples do not change")
    page.get_by_test_id("cancel-delete").click()
    expect(items(page)).to_have_count(2)
    page.locator(f'[data-conversation-id="{second}"] [data-testid="delete"]').click()
    page.get_by_test_id("confirm-delete").click()
    expect(items(page)).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/chat/?$"))
    page.goto(f"/chat/{second}")
    expect(page.get_by_test_id("conversation-missing")).to_be_visible()


def test_text_typed_right_after_new_chat_is_kept(page: Page, app_server) -> None:
    """The new page's state (with its empty draft) arrives after the user started typing:
    the server's messages to the page are held back meanwhile, as on a slow link."""
    hold: list[str | bytes] | None = None

    def route(ws) -> None:
        server = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            if hold is None:
                ws.send(message)
            else:
                hold.append(message)

        server.on_message(to_page)
        routes_seen.append(ws)

    routes_seen: list = []
    page.route_web_socket(re.compile(r"/_event"), route)
    sign_up(page, app_server.url)
    ask_and_wait(page, "echo: first")
    assert routes_seen, "the page's websocket did not go through the route"

    hold = []
    page.get_by_test_id("new-chat").click()
    expect(page).to_have_url(re.compile(r"/chat/?$"))
    box = page.get_by_test_id("composer-input")
    box.press_sequentially("typed at once")
    held, hold = hold, None
    assert held, "nothing from the server was held back"
    for message in held:
        routes_seen[-1].send(message)
    expect(page.get_by_test_id("empty-chat")).to_be_visible()
    expect(box).to_have_value("typed at once")

    # Opening another conversation still shows that conversation's own (empty) draft.
    page.locator('[data-testid="conversation-link"]').first.click()
    expect(page).to_have_url(re.compile(r"/chat/[0-9a-f]{32}/?$"))
    expect(page.get_by_test_id("message").first).to_have_text("echo: first")
    expect(box).to_have_value("")


@pytest.mark.parametrize("open_first_chat", ["loaded", "not loaded"])
def test_enter_right_after_new_chat_asks_in_the_new_chat(
    page: Page, app_server, open_first_chat: str
) -> None:
    """The send overtakes the new page's load on the way to the server (events race for
    the state lock; the load is chained after the page's on_load event): the question
    still goes to the new chat, not to the one shown before. "not loaded": the load of
    the first chat's own page, opened by its first answer, never ran either (a newer
    navigation supersedes it)."""
    held: list[str | bytes] | None = None
    drop_loads = False

    def route(ws) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            nonlocal held
            text = message if isinstance(message, str) else message.decode()
            if drop_loads and ".on_load_internal" in text:
                return
            if held is not None and ".on_load_internal" in text:
                held.append(message)
                return
            server.send(message)
            if held and '.send"' in text:
                for message in held:  # the load reaches the server just after the send
                    server.send(message)
                held = None

        ws.on_message(to_server)

    page.route_web_socket(re.compile(r"/_event"), route)
    sign_up(page, app_server.url)
    drop_loads = open_first_chat == "not loaded"
    ask_and_wait(page, "echo: first")
    first = conversation_id(page)
    drop_loads = False

    held = []
    page.get_by_test_id("new-chat").click()
    expect(page).to_have_url(re.compile(r"/chat/?$"))
    ask(page, "echo: second")
    expect(answers(page, "done")).to_have_text("second", timeout=15_000)
    assert held is None, "the held load was not sent"
    expect(page.locator('[data-testid="message"][data-role="user"]')).to_have_text(
        ["echo: second"]
    )
    expect(page).to_have_url(re.compile(r"/chat/[0-9a-f]{32}/?$"))
    assert conversation_id(page) != first
    expect(items(page)).to_have_count(2)
    page.goto(f"/chat/{first}")
    expect(page.locator('[data-testid="message"][data-role="user"]')).to_have_text(
        ["echo: first"]
    )


def test_enter_sends_shift_enter_adds_a_line_and_ime_enter_does_not_send(
    page: Page, app_server
) -> None:
    sign_up(page, app_server.url)
    box = page.get_by_test_id("composer-input")
    box.fill("echo: 你好")
    # Enter that confirms an input-method candidate arrives with isComposing set.
    box.evaluate(
        """(el) => el.dispatchEvent(new KeyboardEvent("keydown",
             {key: "Enter", code: "Enter", isComposing: true, bubbles: true, cancelable: true}))"""
    )
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("echo: 你好\nsecond line")
    box.press("Enter")
    expect(answers(page, "done")).to_have_count(1, timeout=30_000)
    users = page.locator('[data-testid="message"][data-role="user"]')
    expect(users).to_have_count(1)
    expect(users).to_have_text("echo: 你好\nsecond line")
    expect(box).to_have_value("")
    # Every control is reachable by keyboard and labelled.
    for name in ("send", "new-chat", "search", "theme-toggle", "rename", "delete"):
        control = page.get_by_test_id(name).first
        label = control.get_attribute("aria-label") or control.inner_text()
        assert label.strip(), f"{name} has no accessible label"
        assert control.evaluate("el => el.tabIndex") >= 0, f"{name} is not focusable"
    expect(page.get_by_test_id("live-status")).to_have_text("The answer is complete.")
    expect(page.get_by_test_id("live-status")).to_have_attribute("aria-live", "polite")

    # Edit and resend: the first question and its answer stay one click away.
    page.get_by_test_id("edit").click()
    page.get_by_test_id("edit-input").fill("echo: an edited question")
    page.get_by_test_id("edit-send").click()
    expect(answers(page, "done")).to_have_text("an edited question", timeout=30_000)
    expect(users).to_have_text("echo: an edited question")
    expect(page.get_by_test_id("version-label")).to_have_text("2 / 2")
    page.get_by_test_id("version-prev").click()
    expect(users).to_have_text("echo: 你好\nsecond line")
    expect(answers(page, "done")).to_have_text("你好\nsecond line")


def test_autoscroll_follows_until_the_reader_scrolls_up(page: Page, app_server) -> None:
    sign_up(page, app_server.url)
    app_server.clear_faults()
    app_server.set_fault(token_delay_ms=8)
    ask(page, "long: 900")
    expect(answers(page, "streaming")).to_contain_text("Streaming", timeout=15_000)
    scroller = page.locator("#messages-scroll")
    gap = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    page.wait_for_function(
        "() => document.getElementById('messages-scroll').scrollHeight > "
        "document.getElementById('messages-scroll').clientHeight + 400"
    )
    assert scroller.evaluate(gap) < 10, "the list follows the answer"
    jump = page.get_by_test_id("jump-to-latest")
    expect(jump).to_be_hidden()

    scroller.hover()
    page.mouse.wheel(0, -600)
    expect(jump).to_be_visible()
    top = scroller.evaluate("el => el.scrollTop")
    page.wait_for_function(
        f"() => document.getElementById('messages-scroll').scrollHeight > {top} + 1500"
    )
    assert abs(scroller.evaluate("el => el.scrollTop") - top) < 5, "it stayed where the reader is"

    jump.click()
    expect(jump).to_be_hidden()
    assert scroller.evaluate(gap) < 10
    page.get_by_test_id("stop").click()
    expect(answers(page, "stopped")).to_have_count(1)


def short_answer(n: int) -> str:
    return f"Answer {n}: item **{n}** works like this.\n\n- one point\n- another"


def seed_long_conversation(
    app_server, username: str, turns: int, answer: Callable[[int], str] = short_answer
) -> str:
    """Write a conversation of `turns` question/answer pairs into the app's database;
    `answer(n)` is the n-th answer's text."""
    path = app_server.env["DATABASE_URL"].removeprefix("sqlite:///")
    now = datetime.now(UTC).replace(tzinfo=None)
    stamp = lambda i: (now - timedelta(seconds=turns * 2 - i)).strftime("%Y-%m-%d %H:%M:%S.%f")  # noqa: E731
    cid = uuid.uuid4().hex
    with sqlite3.connect(path, timeout=15) as db:
        (user_id,) = db.execute("SELECT id FROM user WHERE username = ?", (username,)).fetchone()
        (start,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM message").fetchone()
        rows = []
        for i in range(turns * 2):
            role = "user" if i % 2 == 0 else "assistant"
            text = (
                f"Question {i // 2}: how does item {i // 2} work?"
                if role == "user"
                else answer(i // 2)
            )
            rows.append((start + i, cid, start + i - 1 if i else None, i, role, text, stamp(i)))
        db.execute(
            "INSERT INTO conversation (id, user_id, title, title_is_custom, session_id, leaf_id,"
            " draft, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, '', ?, ?)",
            (
                cid,
                user_id,
                f"A {turns}-turn conversation",
                str(uuid.uuid4()),
                start + turns * 2 - 1,
                stamp(0),
                stamp(turns * 2),
            ),
        )
        db.executemany(
            "INSERT INTO message (id, conversation_id, parent_id, depth, role, content, status,"
            " error_kind, error, trace_id, prompt_tokens, completion_tokens, usage_estimated,"
            " run_id, heartbeat_at, stop_requested, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'done', '', '', '', 0, 0, 0, '', NULL, 0, ?, ?)",
            [(*row, row[-1]) for row in rows],
        )
    return cid


def test_a_1000_turn_conversation_opens_in_under_a_second(page: Page, app_server) -> None:
    username = sign_up(page, app_server.url)
    cid = seed_long_conversation(app_server, username, 1000)
    page.reload()
    link = page.locator(f'[data-conversation-id="{cid}"] [data-testid="conversation-link"]')
    expect(link).to_be_visible()
    received: list[int] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda p: received.append(len(p))),
    )
    page.evaluate(
        """() => { window.__openedAt = null;
          new MutationObserver(() => {
            if (!window.__openedAt && document.body.innerText.includes("Answer 999: item"))
              window.__openedAt = performance.now();
          }).observe(document.body, {subtree: true, childList: true, characterData: true}); }"""
    )
    clicked = page.evaluate("performance.now()")
    link.click()
    page.wait_for_function("() => window.__openedAt !== null")
    elapsed_ms = page.evaluate("window.__openedAt") - clicked
    messages = page.get_by_test_id("message")
    expect(messages).to_have_count(50)
    expect(messages.first).to_have_text("Question 975: how does item 975 work?")
    assert elapsed_ms < 1000, f"opening took {elapsed_ms:.0f} ms"
    scroller = page.locator("#messages-scroll")
    assert scroller.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 10

    page.get_by_test_id("load-older").click()
    expect(messages).to_have_count(100)
    expect(messages.first).to_have_text("Question 950: how does item 950 work?")
    # The reader keeps their place: the message that was first is still at the top.
    kept = page.locator('[data-testid="message"]', has_text="Question 975: how does item 975 work?")
    top = kept.evaluate(
        "el => el.getBoundingClientRect().top - "
        "document.getElementById('messages-scroll').getBoundingClientRect().top"
    )
    assert 0 <= top < 120, f"the first message moved to {top} px"
    # Only the last answer offers Regenerate, not the last one of the page loaded above.
    expect(page.get_by_test_id("regenerate")).to_have_count(1)
    expect(messages.last.locator("..").get_by_test_id("regenerate")).to_have_count(1)
    # The page never received the whole history.
    assert sum(received) < 150_000, f"{sum(received)} websocket bytes"
    # Export downloads all of it, not only the pages shown.
    with page.expect_download() as info:
        page.get_by_test_id("export").click()
    download = info.value
    text = Path(download.path()).read_text(encoding="utf-8")
    assert download.suggested_filename.endswith(".md")
    assert text.count("\n## You\n") == 1000 and text.count("\n## Assistant\n") == 1000
    assert "Question 0: how does item 0 work?" in text and "Answer 999: item" in text
    expect(page.get_by_test_id("message")).to_have_count(100)  # the page stayed


def test_a_turn_keeps_the_messages_already_on_the_page(page: Page, app_server) -> None:
    """A turn resends the window of messages; those already shown stay the same elements,
    also when the window moves on by the new turn (rows keyed by message, not by place)."""
    username = sign_up(page, app_server.url)
    cid = seed_long_conversation(app_server, username, 25)
    page.goto(f"{app_server.url}/chat/{cid}")
    messages = page.get_by_test_id("message")
    expect(messages).to_have_count(50)
    page.evaluate(
        """() => { window.__shown = new Map();
          for (const el of document.querySelectorAll('[data-testid="message"]'))
            window.__shown.set(el.dataset.messageId, el.firstElementChild); }"""
    )
    edit = page.get_by_test_id("edit").first
    expect(edit).to_be_enabled()
    app_server.clear_faults()
    app_server.set_fault(token_delay_ms=8)
    try:
        ask(page, "long: 300")
        expect(answers(page, "streaming")).to_have_count(1, timeout=15_000)
        expect(edit).to_be_disabled()  # the rows' actions are off while the turn runs
        expect(messages.last).to_have_attribute("data-status", "done", timeout=30_000)
    finally:
        app_server.clear_faults()
    expect(edit).to_be_enabled()
    expect(page.locator('[data-testid="message"][data-role="user"]').last).to_have_text(
        "long: 300"
    )
    # The window is the last 50 messages: the first turn's two left it.
    expect(messages.first).to_have_text("Question 1: how does item 1 work?")
    kept, rebuilt = page.evaluate(
        """() => { let kept = 0; const rebuilt = [];
          for (const el of document.querySelectorAll('[data-testid="message"]')) {
            if (!window.__shown.has(el.dataset.messageId)) continue;
            if (el.firstElementChild === window.__shown.get(el.dataset.messageId)) kept += 1;
            else rebuilt.push(el.dataset.messageId);
          }
          return [kept, rebuilt]; }"""
    )
    assert rebuilt == []
    assert kept == 48


def test_usage_page_charts_and_csv_show_only_the_users_figures(
    page: Page, app_server, browser: Browser
) -> None:
    sign_up(page, app_server.url)
    ask_and_wait(page, "echo: one two three four")
    tokens = page.get_by_test_id("message-tokens").inner_text()
    spent = int(tokens.split()[0].replace(",", ""))
    page.get_by_test_id("nav-usage").click()
    expect(page).to_have_url(re.compile(r"/usage/?$"))
    expect(page.get_by_test_id("usage-total")).to_have_text(str(spent))
    expect(page.get_by_test_id("usage-requests")).to_have_text("1")
    expect(page.get_by_test_id("usage-conversation-row")).to_have_count(1)
    expect(page.get_by_test_id("usage-conversation-title")).to_have_text("echo: one two three four")
    expect(page.get_by_test_id("usage-day-row")).to_have_count(30)
    for chart in ("usage-day-chart", "usage-conversation-chart"):
        expect(
            page.get_by_test_id(chart).locator("svg.recharts-surface[role=application]")
        ).to_be_visible()
    expect(
        page.get_by_test_id("usage-day-chart").locator(".recharts-bar-rectangle path")
    ).not_to_have_count(0)
    with page.expect_download() as download:
        page.get_by_test_id("usage-csv").click()
    content = download.value.path().read_text()
    header, row = content.strip().splitlines()
    assert header.startswith("day,session_id,conversation_id,title,requests")
    assert row.endswith(
        f",echo: one two three four,1,{row.split(',')[-3]},{row.split(',')[-2]},{spent}"
    )

    other = new_context(browser, app_server)
    try:
        stranger = other.new_page()
        sign_up(stranger, app_server.url)
        stranger.goto("/usage")
        expect(stranger.get_by_test_id("usage-total")).to_have_text("0")
        expect(stranger.get_by_test_id("usage-conversation-row")).to_have_count(0)
    finally:
        other.close()


def test_two_users_never_see_each_others_conversations(
    page: Page, app_server, browser: Browser
) -> None:
    sign_up(page, app_server.url)
    ask_and_wait(page, "echo: my private note")
    theirs = conversation_id(page)

    other = new_context(browser, app_server)
    try:
        intruder = other.new_page()
        sign_up(intruder, app_server.url)
        expect(intruder.get_by_test_id("conversations-empty")).to_be_visible()
        for guess in (theirs, theirs[:-1] + ("0" if theirs[-1] != "0" else "1"), "1", "../usage"):
            intruder.goto(f"/chat/{guess}")
            if guess == "../usage":
                continue
            expect(intruder.get_by_test_id("conversation-missing")).to_be_visible()
            expect(intruder.get_by_test_id("message")).to_have_count(0)
            expect(intruder.get_by_test_id("composer-input")).to_be_disabled()
            expect(intruder.get_by_test_id("export")).to_have_count(0)
        export = intruder.request.get(export_path(theirs))
        assert export.status == 404 and "private note" not in export.text()
        assert "private note" not in intruder.content()
        shot(intruder, "test_two_users_never_see_each_others_conversations-intruder")
    finally:
        other.close()
    page.reload()
    expect(page.get_by_test_id("message").first).to_have_text("echo: my private note")


def test_mobile_layout_and_dark_theme(app_server, browser: Browser) -> None:
    context = new_context(
        browser,
        app_server,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        sign_up(page, app_server.url)
        ask_and_wait(page, "echo: small screens, and a title far too long for one of them")
        # The title keeps to one line beside "Conversations" and "Export", cut short.
        title = page.get_by_test_id("conversation-title").bounding_box()
        export = page.get_by_test_id("export").bounding_box()
        assert title and export and title["height"] < 30 and export["x"] + export["width"] <= 390
        sidebar = page.get_by_test_id("sidebar")
        expect(sidebar).to_be_hidden()
        toggle = page.get_by_test_id("toggle-sidebar")
        expect(toggle).to_have_attribute("aria-expanded", "false")
        box = page.get_by_test_id("composer-input").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert box["y"] + box["height"] <= 844, "the composer is on screen"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scroll"
        # Text under 16 px makes a phone zoom into the field it focuses.
        font_size = "e => parseFloat(getComputedStyle(e).fontSize)"
        assert page.get_by_test_id("composer-input").evaluate(font_size) >= 16
        shot(page, "test_mobile_layout_and_dark_theme-chat")
        toggle.click()
        expect(sidebar).to_be_visible()
        expect(items(page)).to_have_count(1)
        assert page.get_by_test_id("search").evaluate(font_size) >= 16
        shot(page, "test_mobile_layout_and_dark_theme-sidebar")
        page.get_by_test_id("close-sidebar").click()
        expect(sidebar).to_be_hidden()
        toggle.click()
        page.get_by_test_id("conversation-link").click()
        expect(sidebar).to_be_hidden()

        page.get_by_test_id("theme-toggle").click()
        expect(page.locator("html")).to_have_class(re.compile(r"\bdark\b"))
        page.reload()
        expect(page.locator("html")).to_have_class(re.compile(r"\bdark\b"))
        expect(page.locator('[data-testid="message"][data-role="assistant"]')).to_be_visible()
        shot(page, "test_mobile_layout_and_dark_theme-dark")
    finally:
        context.close()


def wait_for(predicate, timeout: float = 5.0, what: str = ""):
    """Poll `predicate` until it returns something truthy (server-side effects)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        time.sleep(0.05)  # polling a server, bounded by the deadline
