"""Every way an answer can end, in headless Chromium, with the gateway's fault switch.

Stop, reload, a cut stream, 429, 402, an exhausted budget and a server restart each end
with the question and the text that arrived kept and marked, and the gateway's own
counters show what was (and was not) sent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.e2e.test_conversations import (
    answers,
    ask,
    ask_and_wait,
    conversation_id,
    new_context,
    shot,
    sign_up,
    wait_for,
)
from tests.fixtures.app import ROOT, project_copy, run_app

pytestmark = pytest.mark.e2e


def streaming_text(page: Page, at_least: int) -> str:
    """Wait until the answer in progress shows `at_least` characters; return its text."""
    bubble = answers(page, "streaming")
    page.wait_for_function(
        """(n) => {
          const el = document.querySelector('[data-testid="message"][data-status="streaming"]');
          return el && !el.querySelector('[data-testid="turn-phase"]') && el.innerText.length >= n;
        }""",
        arg=at_least,
        timeout=20_000,
    )
    return bubble.inner_text()


def test_stop_keeps_the_partial_and_the_gateway_sees_the_cancel(page: Page, app_server) -> None:
    sign_up(page, app_server.url)
    app_server.clear_faults()
    ask(page, "long: 400")
    partial = streaming_text(page, 80)
    before = app_server.gateway_stats()["client_disconnects"]
    page.get_by_test_id("stop").click()
    stopped_at = time.monotonic()
    wait_for(
        lambda: app_server.gateway_stats()["client_disconnects"] > before,
        timeout=1.0,
        what="the gateway saw the client leave within 1 s",
    )
    assert time.monotonic() - stopped_at < 1.0
    stopped = answers(page, "stopped")
    expect(stopped).to_have_count(1)
    expect(page.get_by_test_id("message-error")).to_have_text(
        "Stopped. The part that arrived is kept."
    )
    kept = stopped.inner_text()
    assert kept.startswith(partial[:60]) and len(kept) >= len(partial)
    expect(page.get_by_test_id("send")).to_be_visible()
    expect(page.get_by_test_id("continue")).to_be_visible()
    expect(page.get_by_test_id("retry")).to_be_visible()
    expect(page.get_by_test_id("message-tokens")).to_have_text(re.compile(r"^≈\d+ tokens$"))
    page.reload()
    expect(answers(page, "stopped")).to_contain_text(partial[:60])


def test_escape_stops_the_answer_but_not_from_another_box(page: Page, app_server) -> None:
    sign_up(page, app_server.url)
    app_server.clear_faults()
    ask(page, "long: 400")
    streaming_text(page, 40)
    # Escape in the sidebar's search box is that box's own: the answer goes on.
    page.get_by_test_id("search").press("Escape")
    before = len(streaming_text(page, 1))
    streaming_text(page, before + 20)
    expect(answers(page, "streaming")).to_have_count(1)
    page.get_by_test_id("composer-input").press("Escape")
    expect(answers(page, "stopped")).to_have_count(1)
    expect(page.get_by_test_id("send")).to_be_visible()


def test_reload_mid_answer_shows_the_partial_and_the_answer_completes(
    page: Page, app_server
) -> None:
    sign_up(page, app_server.url)
    app_server.clear_faults()
    ask(page, "long: 200")
    partial = streaming_text(page, 150)
    cid = conversation_id(page)
    page.reload()
    expect(page).to_have_url(re.compile(cid))
    # After the reconnect the text that had arrived is there at once, and it keeps growing.
    expect(answers(page)).to_contain_text(partial[:120], timeout=5_000)
    done = answers(page, "done")
    expect(done).to_have_count(1, timeout=30_000)
    assert len(done.inner_text()) > len(partial)
    expect(page.locator('[data-testid="message"][data-role="user"]')).to_have_text("long: 200")


def test_reload_mid_answer_on_a_slow_network_shows_the_partial_while_streaming(
    page: Page, app_server
) -> None:
    sign_up(page, app_server.url)
    app_server.clear_faults()
    # Long enough (about 15 s) to be still streaming when the slowed page has reloaded,
    # however busy the machine.
    ask(page, "long: 1000")
    partial = streaming_text(page, 150)

    def slow_live_drafts(route: Route) -> None:
        # The page's code that holds replies in progress comes late, after the server has
        # already sent the text so far: that text must not be lost.
        response = route.fetch()
        if b"behestLive" in response.body():
            time.sleep(1.5)
        route.fulfill(response=response)

    page.route(re.compile(r".*/assets/.*\.js$"), slow_live_drafts)
    page.reload()
    shown = streaming_text(page, len(partial))
    assert shown.startswith(partial[:120])
    expect(answers(page, "done")).to_have_count(1, timeout=60_000)


def test_a_dropped_websocket_reconnects_and_the_answer_completes(page: Page, app_server) -> None:
    sockets = []

    def relay(ws) -> None:  # pass everything through, so the test can cut the line
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r"/_event/"), relay)
    sign_up(page, app_server.url)
    app_server.clear_faults()
    ask(page, "long: 200")
    partial = streaming_text(page, 100)
    opened = len(sockets)
    sockets[-1].close(code=1001, reason="network dropped")
    done = answers(page, "done")
    expect(done).to_have_count(1, timeout=30_000)
    assert len(sockets) > opened, "the page opened a new websocket"
    assert done.inner_text().startswith(partial[:80]) and len(done.inner_text()) > len(partial)


def test_a_cut_stream_keeps_the_partial_and_retry_completes_it(page: Page, app_server) -> None:
    sign_up(page, app_server.url)
    app_server.clear_faults()
    app_server.set_fault(cut_after=25)
    ask(page, "Tell me about lists.")
    failed = answers(page, "error")
    expect(failed).to_have_count(1, timeout=30_000)
    expect(page.get_by_test_id("message-error")).to_contain_text("cut off")
    partial = failed.inner_text()
    assert len(partial) > 20
    expect(page.get_by_test_id("trace-details")).to_be_visible()
    page.get_by_test_id("trace-details").locator("summary").click()
    expect(page.get_by_test_id("trace-id")).to_have_text(re.compile(r"Trace id: tr_[0-9a-f]+"))

    page.get_by_test_id("retry").click()
    expect(answers(page, "done")).to_have_count(1, timeout=30_000)
    expect(page.get_by_test_id("version-label")).to_have_text("2 / 2")
    page.get_by_test_id("version-prev").click()
    expect(answers(page, "error")).to_have_count(1)
    expect(page.get_by_test_id("version-label")).to_have_text("1 / 2")
    assert answers(page, "error").inner_text() == partial


def test_429_shows_the_countdown_then_the_answer_arrives(page: Page, app_server) -> None:
    sign_up(page, app_server.url)
    app_server.clear_faults()
    before = app_server.gateway_stats()["responses_by_status"].get("429", 0)
    app_server.set_fault(status=429, code="rate_limited", retry_after=2)
    ask(page, "echo: patience pays")
    countdown = page.get_by_test_id("countdown")
    expect(countdown).to_be_visible()
    expect(page.get_by_test_id("countdown-seconds")).to_have_text("2")
    expect(page.get_by_test_id("countdown-seconds")).to_have_text("1")
    expect(page.get_by_test_id("stop")).to_be_visible()
    expect(answers(page, "done")).to_have_text("patience pays", timeout=15_000)
    expect(countdown).to_have_count(0)
    assert app_server.gateway_stats()["responses_by_status"].get("429", 0) == before + 1


def test_402_shows_the_tier_quota_and_sends_nothing_more(page: Page, app_server) -> None:
    sign_up(page, app_server.url)
    app_server.clear_faults()
    app_server.set_fault(
        status=402,
        code="quota_exceeded",
        message="daily token limit of the free tier reached",
        details={
            "tier": "free",
            "limit": {"tokens_per_day": 50000},
            "usage": {"tokens_today": 50123},
        },
    )
    ask(page, "hello")
    failed = answers(page, "error")
    expect(failed).to_have_count(1, timeout=15_000)
    error = page.get_by_test_id("message-error")
    expect(error).to_have_attribute("data-kind", "quota")
    expect(error).to_contain_text(
        "The daily quota of the free tier is reached: 50,123 of 50,000 tokens used today."
    )
    expect(error).to_contain_text(re.compile(r"It resets at 00:00 UTC \(in \d+ (h|min)"))
    expect(page.get_by_test_id("retry")).to_have_count(0)
    expect(page.get_by_test_id("continue")).to_have_count(0)

    sent = app_server.gateway_stats()["chat_requests"]
    ask(page, "one more try")
    notice = page.get_by_test_id("composer-notice")
    expect(notice).to_have_attribute("data-kind", "quota")
    expect(notice).to_contain_text("daily quota of the free tier is reached")
    expect(page.get_by_test_id("composer-input")).to_have_value("one more try")
    expect(page.locator('[data-testid="message"][data-role="user"]')).to_have_count(1)
    assert app_server.gateway_stats()["chat_requests"] == sent


def test_over_budget_nothing_is_sent(page: Page, app_server) -> None:
    username = sign_up(page, app_server.url)
    app_server.clear_faults()
    ask_and_wait(page, "echo: cheap")
    spent = int(page.get_by_test_id("message-tokens").inner_text().split()[0])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "behest_chat.usage",
            "set-budget",
            username,
            "--daily",
            str(spent + 3),
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
            "DATABASE_URL": app_server.env["DATABASE_URL"],
            "APP_ENV_FILE": os.devnull,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    page.reload()
    expect(page.get_by_test_id("remaining-budget")).to_have_text(
        f"3 of {spent + 3:,} tokens left today (free)"
    )
    sent = app_server.gateway_stats()["chat_requests"]
    ask(page, "echo: this would cost more than three tokens")
    notice = page.get_by_test_id("composer-notice")
    expect(notice).to_have_attribute("data-kind", "daily_budget")
    expect(notice).to_contain_text(f"{spent:,} of {spent + 3:,} tokens")
    expect(page.get_by_test_id("composer-input")).to_have_value(
        "echo: this would cost more than three tokens"
    )
    expect(answers(page)).to_have_count(1)
    assert app_server.gateway_stats()["chat_requests"] == sent


def test_a_server_restart_mid_answer_leaves_the_partial_marked_interrupted(
    browser: Browser, tmp_path: Path, gateway
) -> None:
    # Both app processes talk to one gateway of their own, as a deployment talks to Behest;
    # stopping the first app then ends only the app, not the model service.
    remote = {"BEHEST_BASE_URL": gateway.base_url, "BEHEST_KEY": gateway.api_key}
    root = project_copy(Path(tempfile.mkdtemp(dir=tmp_path)))
    gateway.clear_faults()
    with run_app(tmp_path, root, **remote) as first:
        context = new_context(browser, first)
        page = context.new_page()
        sign_up(page, first.url)
        gateway.set_fault(token_delay_ms=20)
        ask(page, "long: 3000")
        partial = streaming_text(page, 200)
        cid = conversation_id(page)
        wait_for(
            lambda: len(_stored_answer(first, cid)[1]) >= len(partial),
            timeout=3.0,
            what="the partial answer is in the database",
        )
        context.close()
        before = gateway.stats()["client_disconnects"]
    # The first server is gone in the middle of the answer; the gateway saw it leave.
    assert gateway.stats()["client_disconnects"] > before
    status, stored = _stored_answer(first, cid)
    assert status in ("streaming", "interrupted") and len(stored) >= len(partial)
    later = Path(tempfile.mkdtemp(dir=tmp_path))
    with run_app(later, root, DATABASE_URL=first.env["DATABASE_URL"], **remote) as second:
        context = new_context(browser, second)
        page = context.new_page()
        signed_in = page.request.post(
            f"{second.url}/api/auth/login",
            data={"username": _username(first, cid), "password": "correct horse battery"},
            headers={"Origin": second.url},
        )
        assert signed_in.ok
        page.goto(f"{second.url}/chat/{cid}")
        interrupted = answers(page, "interrupted")
        expect(interrupted).to_have_count(1, timeout=15_000)
        expect(interrupted).to_contain_text(partial[:150])
        expect(page.get_by_test_id("message-error")).to_have_attribute("data-kind", "interrupted")
        expect(page.get_by_test_id("send")).to_be_visible()
        expect(page.get_by_test_id("continue")).to_be_visible()
        shot(page, "test_a_server_restart_mid_answer_leaves_the_partial_marked_interrupted")
        gateway.set_fault(token_delay_ms=20)
        page.get_by_test_id("retry").click()
        streaming_text(page, 50)  # the new version streams from the second server
        page.get_by_test_id("stop").click()
        expect(answers(page, "stopped")).to_have_count(1)
        expect(page.get_by_test_id("version-label")).to_have_text("2 / 2")
        page.get_by_test_id("version-prev").click()
        expect(answers(page, "interrupted")).to_contain_text(partial[:150])
        context.close()


def _stored_answer(app, cid: str) -> tuple[str, str]:
    import sqlite3

    path = app.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=15) as db:
        row = db.execute(
            "SELECT status, content FROM message WHERE conversation_id = ? AND role = 'assistant'"
            " ORDER BY id DESC LIMIT 1",
            (cid,),
        ).fetchone()
    return (row[0], row[1]) if row else ("", "")


def _username(app, cid: str) -> str:
    import sqlite3

    path = app.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=15) as db:
        (name,) = db.execute(
            "SELECT u.username FROM conversation c JOIN user u ON u.id = c.user_id WHERE c.id = ?",
            (cid,),
        ).fetchone()
    return name
