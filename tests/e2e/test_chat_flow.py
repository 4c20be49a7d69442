"""End to end in headless Chromium against the app started as the README starts it."""

from __future__ import annotations

import re
import secrets
import sqlite3

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.unit.test_live_draft import CUT_OFF_AFTER_WORDS, CUT_OFF_PART_WAY

pytestmark = pytest.mark.e2e

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
PASSWORD = "correct horse battery"


def register(page: Page, base: str = "") -> str:
    """Create a fresh account through the UI (at `base`, default the app's URL)."""
    username = f"u{secrets.token_hex(4)}"
    page.goto(f"{base}/register")
    page.get_by_test_id("username-input").fill(username)
    page.get_by_test_id("display_name-input").fill(f"User {username}")
    page.get_by_test_id("password-input").fill(PASSWORD)
    page.get_by_test_id("register").click()
    expect(page).to_have_url(re.compile(r"/chat/?$"))
    expect(page.get_by_test_id("display-name")).to_have_text(f"User {username}")
    return username


def ask(page: Page, question: str) -> None:
    """Type a question and send it with Enter."""
    box = page.get_by_test_id("composer-input")
    box.fill(question)
    box.press("Enter")


def assistant_messages(page: Page):
    return page.locator('[data-testid="message"][data-role="assistant"]')


def test_register_ask_and_watch_the_answer_stream(page: Page, app_server) -> None:
    register(page)
    # Record every distinct length of the streaming reply as the DOM changes.
    page.evaluate(
        """() => {
          window.__lengths = [];
          new MutationObserver(() => {
            const el = document.querySelector('[data-testid="message"][data-status="streaming"]');
            // Before the first token the bubble shows the phase, not the answer.
            const phase = el && el.querySelector('[data-testid="turn-phase"]');
            const n = el && !phase ? el.innerText.length : 0;
            if (n && window.__lengths[window.__lengths.length - 1] !== n) window.__lengths.push(n);
          }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }"""
    )
    ask(page, "How do I read a file in Python?")
    user_msg = page.locator('[data-testid="message"][data-role="user"]')
    expect(user_msg).to_have_text("How do I read a file in Python?")
    done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
    expect(done).to_have_count(1, timeout=30_000)
    expect(page.get_by_test_id("send")).to_be_visible()
    lengths = page.evaluate("window.__lengths")
    assert len(lengths) >= 2, f"answer arrived in {len(lengths)} visible step(s)"
    assert lengths == sorted(lengths), "the streamed answer only grows"
    assert len(done.inner_text()) >= lengths[-1] * 0.5
    # The model's markdown renders as HTML (a code block with a copy button), not raw text.
    expect(done.locator("pre, code").first).to_be_visible()
    expect(done.get_by_test_id("copy-code")).to_be_visible()


def test_the_composer_is_one_line_again_after_a_long_question(page: Page, app_server) -> None:
    register(page)
    box = page.get_by_test_id("composer-input")
    one_line = box.bounding_box()["height"]
    box.fill("echo: a question\non\nseveral\nlines")
    box.dispatch_event("input")  # the box grows as the text is typed
    assert box.bounding_box()["height"] > one_line + 20
    box.press("Enter")
    expect(page.get_by_test_id("message").first).to_have_attribute("data-role", "user")
    expect(box).to_have_value("")
    assert box.bounding_box()["height"] <= one_line + 1


def test_a_question_too_long_to_send_stays_in_the_box(page: Page, app_server) -> None:
    """Over a megabyte: the websocket would drop the message, after the box was emptied."""
    register(page)
    box = page.get_by_test_id("composer-input")
    text = "echo: " + "word " * 220_000
    box.fill(text)
    box.press("Enter")
    notice = page.get_by_test_id("composer-too-long")
    expect(notice).to_be_visible()
    expect(notice).to_have_text(
        f"This question is {len(text):,} characters long; one message holds at most "
        "100,000. Shorten it, or send it in parts."
    )
    assert box.input_value() == text
    page.get_by_test_id("new-chat").focus()  # leaving the box saves a draft: not this one
    box.fill("echo: short enough")
    expect(notice).to_be_hidden()  # once the text fits
    box.press("Enter")
    expect(assistant_messages(page).and_(page.locator('[data-status="done"]'))).to_have_count(1)
    expect(page.get_by_test_id("message").first).to_have_text("echo: short enough")
    page.reload()  # the connection stayed up throughout: nothing but the short question
    expect(page.get_by_test_id("message")).to_have_count(2)


def test_a_table_in_an_answer_has_cell_borders_and_padding(page: Page, app_server) -> None:
    register(page)
    ask(page, "echo: | Name | Tokens |\n|---|---|\n| alpha | 12 |")
    done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
    cell = done.locator("td").first
    expect(cell).to_have_text("alpha", timeout=30_000)
    style = cell.evaluate(
        "e => { const s = getComputedStyle(e); "
        "return [parseFloat(s.paddingLeft), parseFloat(s.borderTopWidth)]; }"
    )
    assert style[0] >= 4 and style[1] >= 1, f"padding, border: {style}"


# A reply's top-level markdown blocks, as the page splits it while it streams.
BLOCKS = [
    "# Title\n\n",
    "A paragraph\non two lines\n\n",
    "- an item\n\n    still the item, indented\n\n",
    "```python\nx = 1\n\n\ny = 2\n```\n\n",
    "~~~\n```\n\nstill code: a fence closes with its own kind\n~~~\n\n",
    "1. the end",
]


def test_a_reply_in_progress_renders_block_by_block(page: Page, app_server) -> None:
    """A new piece renders the last block of the reply again, not the whole reply. Blocks
    start at a line in the first column after a blank line, never inside a code fence;
    at every length the text passes through they make up the whole text, and a block
    that another follows never changes again."""
    register(page)
    text = "".join(BLOCKS)
    assert page.evaluate("t => window.behestLive.markdownBlocks(t)", text) == BLOCKS
    wrong = page.evaluate(
        """t => { const whole = window.behestLive.markdownBlocks(t), wrong = [];
          for (let n = 0; n <= t.length; n++) {
            const blocks = window.behestLive.markdownBlocks(t.slice(0, n));
            const lost = blocks.join("") !== t.slice(0, n);
            const changed = blocks.slice(0, -1).some((block, i) => block !== whole[i]);
            if (lost || changed) wrong.push(n);
          }
          return wrong; }""",
        text,
    )
    assert wrong == []
    # A block's marker alone on the last line waits for its words: an empty heading, a
    # line of text turned into a heading by "-" or "=" under it, an empty item or quote.
    draft_blocks = "t => window.behestLive.draftBlocks(t)"
    for shown, held in [
        ("Intro\n\n", "## "),
        ("Steps:\n", "-"),
        ("Title\n", "="),
        ("Intro\n\n- one\n", "- "),
        ("Intro\n\n1. one\n", "2."),
        ("Intro\n\n", "> "),
        ("Intro\n\n", "| a | b |\n|---|--"),  # a table's first row, not yet a table
    ]:
        assert page.evaluate(draft_blocks, shown + held) == page.evaluate(draft_blocks, shown)
    assert page.evaluate(draft_blocks, "Steps:\n- one") == ["Steps:\n- one"]
    # While it streams, a reply shows what it would show if it ended there (unfinished_text).
    for text, shown in [*CUT_OFF_PART_WAY, *((t, t) for t in CUT_OFF_AFTER_WORDS)]:
        assert "".join(page.evaluate(draft_blocks, text)) == shown, text
    table = "Intro\n\n| a | b |\n|---|---|\n"
    assert "".join(page.evaluate(draft_blocks, table)) == table
    page.evaluate(
        """() => { window.__emptyHeadings = 0;
          new MutationObserver(() => {
            const headings = document.querySelectorAll(
              '[data-testid="live-draft"] :is(h1, h2, h3, h4, h5, h6)');
            for (const h of headings) if (!h.textContent.trim()) window.__emptyHeadings++;
          }).observe(document.body, { childList: true, subtree: true, characterData: true });
        }"""
    )
    ask(page, "long: 300")  # the model writes "#", "#", " Streaming" …
    draft = page.get_by_test_id("live-draft")
    expect(draft.locator("h2")).to_have_count(1, timeout=15_000)
    expect(draft.locator("pre")).to_have_count(1)  # the code block, highlighted as it comes
    done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
    expect(done).to_have_count(1, timeout=30_000)
    assert page.evaluate("window.__emptyHeadings") == 0, "an empty heading was shown"


def test_a_finished_answer_keeps_what_it_rendered_while_streaming(page: Page, app_server) -> None:
    """The stored answer takes the place of the one being written: its blocks are not
    rendered again (a long answer would freeze the page for a moment when it ends), nor
    when later turns move it from the newest rows into the window (a fold)."""
    register(page)
    ask(page, "long: 300")
    # The heading's block is done once the paragraph after it has begun: a block still
    # growing renders again with each piece, as it should.
    draft = page.get_by_test_id("live-draft")
    expect(draft.locator("h2").first).to_have_text("Streaming in practice", timeout=15_000)
    expect(draft.locator("p").first).to_be_visible()
    draft.locator("h2").first.evaluate("h => { window.__heading = h; }")
    done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
    expect(done).to_have_count(1, timeout=30_000)
    kept = "window.__heading.isConnected && window.__heading.closest('[data-status=done]')"
    assert page.evaluate(f"!!({kept})"), "the answer's heading was rendered again"
    for n in range(2, 6):  # the fifth turn folds the newest rows into the window
        ask(page, f"echo: turn {n}")
        expect(done).to_have_count(n, timeout=30_000)
    assert page.evaluate(f"!!({kept})"), "the answer was rendered again when rows moved"


def test_a_growing_block_keeps_its_elements_while_pieces_arrive(page: Page, app_server) -> None:
    """The block being written is rendered again with each piece, but into the same
    elements: a selection in it, or a press on its code block's Copy button, survives."""
    register(page)
    ask(page, "long: 300")
    # Each element is taken as soon as it shows, then looked up again once it has grown.
    for element, grown in [("p", "p"), ("[data-testid=copy-code]", "pre")]:
        page.wait_for_function(
            """([element, grown]) => {
              const draft = document.querySelector('[data-testid="live-draft"]');
              const found = draft && draft.querySelector(element);
              if (!found) return false;
              window.__kept = found;
              window.__shown = draft.querySelector(grown).textContent.length;
              return true;
            }""",
            arg=[element, grown],
            polling="raf",
            timeout=15_000,
        )
        page.wait_for_function(
            """(grown) => {
              const now = document.querySelector(`[data-testid="live-draft"] ${grown}`);
              return now && now.textContent.length > window.__shown;
            }""",
            arg=grown,
            timeout=15_000,
        )
        assert page.evaluate("window.__kept.isConnected"), f"the growing {element} was replaced"
    # The kept elements still follow the theme: the highlighter's colours change with it.
    background = "() => getComputedStyle(document.querySelector('pre')).backgroundColor"
    light = page.evaluate(background)
    page.get_by_test_id("theme-toggle").click()
    page.wait_for_function(f"({background})() !== {light!r}")


def test_copy_puts_an_answer_or_its_code_on_the_clipboard(page: Page, app_server) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    register(page)
    answer = "Run this:\n\n```python\nprint('hi')\n```"
    ask(page, f"echo: {answer}")
    done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
    expect(done).to_have_count(1, timeout=30_000)
    toasts = page.locator("[data-sonner-toast]")

    page.get_by_test_id("copy").last.click()
    expect(toasts.filter(has_text="Copied.")).to_have_count(1)
    assert page.evaluate("navigator.clipboard.readText()") == answer
    done.get_by_test_id("copy-code").click()
    expect(toasts.filter(has_text="Copied.")).to_have_count(2)
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"


def test_copy_works_where_the_clipboard_api_is_missing(page: Page, app_server) -> None:
    """A demo served over plain http on a LAN address has no navigator.clipboard."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    register(page)
    ask(page, "echo: Plain words to copy")
    done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
    expect(done).to_have_count(1, timeout=30_000)
    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined})")

    page.get_by_test_id("copy").first.click()  # the question
    expect(page.locator("[data-sonner-toast]").filter(has_text="Copied.")).to_have_count(1)
    reader = page.context.new_page()
    reader.goto("/login")
    assert reader.evaluate("navigator.clipboard.readText()") == "echo: Plain words to copy"


def test_an_unknown_address_says_so_and_leads_back(page: Page, app_server) -> None:
    register(page)
    page.goto("/no/such/page")
    expect(page.get_by_test_id("not-found")).to_contain_text("Page not found")
    expect(page).to_have_title("Page not found · behest-chat")
    page.get_by_test_id("back-to-chat").click()
    expect(page.get_by_test_id("composer-input")).to_be_visible()


def test_reload_keeps_sign_in_and_sign_out_ends_the_session(page: Page, app_server) -> None:
    username = register(page)
    token = page.request.post("/api/behest/token")
    assert token.status == 200
    body = token.json()
    assert set(body) == {"token", "ttl", "sessionId", "expiresAt"}
    assert token.headers["cache-control"] == "no-store"

    page.reload()
    expect(page).to_have_url(re.compile(r"/chat/?$"))
    expect(page.get_by_test_id("display-name")).to_have_text(f"User {username}")

    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile(r"/login/?$"))
    assert page.request.post("/api/behest/token").status == 401
    # Signed out, the chat page is never shown empty on the way to the sign-in page (the
    # mark survives the redirect, which may load the page anew).
    page.add_init_script(
        """const look = () => {
          const box = document.querySelector('[data-testid="composer-input"]');
          if (box && box.checkVisibility()) sessionStorage.setItem("chatShown", "1");
          if (!location.pathname.startsWith("/login")) requestAnimationFrame(look);
        };
        requestAnimationFrame(look);"""
    )
    for path in ("/", "/chat"):
        page.evaluate("sessionStorage.removeItem('chatShown')")
        page.goto(path)
        expect(page).to_have_url(re.compile(r"/login/?$"))
        assert page.evaluate("sessionStorage.getItem('chatShown')") is None, path


def test_wrong_password_is_refused_without_saying_why(page: Page, app_server) -> None:
    username = register(page)
    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile(r"/login/?$"))
    for name in (username, f"nobody{secrets.token_hex(3)}"):
        page.get_by_test_id("username-input").fill(name)
        page.get_by_test_id("password-input").fill("wrong password!")
        page.get_by_test_id("sign-in").click()
        expect(page.get_by_test_id("auth-error")).to_have_text("Wrong username or password.")
    page.get_by_test_id("username-input").fill(username)
    page.get_by_test_id("password-input").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page).to_have_url(re.compile(r"/chat/?$"))


def test_settings_page_lists_origins_and_marks_this_one(page: Page, app_server) -> None:
    register(page)
    page.get_by_test_id("nav-settings").click()
    expect(page).to_have_url(re.compile(r"/settings/?$"))
    origins = page.get_by_test_id("allowed-origin")
    expect(origins).to_have_count(2)
    expect(page.locator('[data-testid="allowed-origin"][data-current="true"]')).to_have_text(
        re.compile(re.escape(app_server.url))
    )
    expect(page.get_by_test_id("origin-check")).to_have_attribute("data-allowed", "true")
    expect(page.get_by_test_id("setting-mode")).to_have_text("local gateway")
    expect(page.get_by_test_id("setting-tier")).to_have_text("free")
    expect(page.get_by_test_id("setting-key")).to_have_text(re.compile(r"^sha256:[0-9a-f]{12}$"))


def test_settings_page_gives_the_line_to_add_an_unlisted_origin(page: Page, app_server) -> None:
    other = app_server.url.replace("localhost", "127.0.0.1")
    register(page, other)  # the same app, reached through an origin that is not in the list
    page.goto(f"{other}/settings")
    check = page.get_by_test_id("origin-check")
    expect(check).to_have_attribute("data-allowed", "false")
    expect(page.locator('[data-testid="allowed-origin"][data-current="true"]')).to_have_count(0)
    expect(page.get_by_test_id("origin-fix")).to_contain_text(
        f"BEHEST_ALLOWED_ORIGINS={app_server.url},http://localhost:5173,{other}"
    )


def test_raw_html_in_an_answer_is_shown_as_text(page: Page, app_server) -> None:
    register(page)
    payload = '<img src=x onerror="window.__pwned=1"> <b>bold?</b>'
    ask(page, f"echo: {payload}")
    done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
    expect(done).to_have_count(1, timeout=30_000)
    expect(done).to_contain_text("<img src=x")
    assert done.locator("img, b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_nothing_secret_reaches_the_browser(page: Page, app_server, recorder) -> None:
    username = register(page)
    ask(page, "Tell me about lists.")
    expect(assistant_messages(page).and_(page.locator('[data-status="done"]'))).to_have_count(
        1, timeout=30_000
    )
    page.get_by_test_id("nav-settings").click()
    expect(page.get_by_test_id("origin-check")).to_be_visible()

    session_cookie = next(
        c for c in page.context.cookies() if c["name"] == "behest_chat_session"
    )
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Lax"
    db_path = app_server.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(db_path) as db:
        (password_hash,) = db.execute(
            "SELECT password_hash FROM user WHERE username = ?", (username,)
        ).fetchone()

    html = page.content()
    bundle = "".join(
        page.request.get(src).text()
        for src in page.evaluate(
            "[...document.querySelectorAll('script[src], link[rel=modulepreload]')]"
            ".map(e => e.src || e.href)"
        )
    )
    forbidden = [*app_server.secrets, session_cookie["value"], password_hash, PASSWORD]
    places = (("HTML", html), ("JS bundle", bundle), ("websocket", "\n".join(recorder.frames)))
    for where, text in places:
        for secret in forbidden:
            assert secret not in text, f"a secret reached the browser through the {where}"
        assert not JWT.search(text), f"a JWT reached the browser through the {where}"
    assert recorder.frames, "the websocket was recorded"


def test_behind_a_trusted_proxy_the_throttle_counts_each_client(browser, app_factory) -> None:
    server = app_factory(APP_TRUSTED_PROXIES="127.0.0.1")

    def failed_logins(forwarded_for: str, times: int) -> list[int]:
        return [
            httpx.post(
                f"{server.url}/api/auth/login",
                json={"username": f"nobody{n}", "password": "wrong password!"},
                headers={"Origin": server.url, "X-Forwarded-For": forwarded_for},
            ).status_code
            for n in range(times)
        ]

    assert failed_logins("203.0.113.5", 6) == [401] * 5 + [429]
    assert failed_logins("198.51.100.7", 1) == [401]
    # The app behind the proxy setting still works end to end (pages, websocket, a turn).
    context = browser.new_context(base_url=server.url)
    try:
        page = context.new_page()
        register(page)
        ask(page, "echo: through the proxy setting")
        done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
        expect(done).to_have_text("through the proxy setting", timeout=30_000)
    finally:
        context.close()
