"""Browser-direct chat in headless Chromium: the page streams from the gateway itself.

The app's page fetches its per-user token from `/api/behest/token` and calls the embedded
gateway's `/v1/chat/completions` cross-origin (`assets/direct.js`, and the plain example
page at `/examples/browser-direct`). Faults come from the gateway's fault switch.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from behest_chat.behest import errors
from behest_chat.direct import read_direct_turn, run_turn_script
from behest_chat.state.failures import describe_error
from tests.e2e.test_chat_flow import JWT, PASSWORD
from tests.fixtures.app import free_port

pytestmark = pytest.mark.e2e

EXAMPLE = "/examples/browser-direct"
# A short answer (max_tokens) keeps the tests quick; the example page streams a long one.
STREAM = """async ([baseUrl, sessionId, question]) => {
  const r = await window.behestDirect.streamChat({
    baseUrl, sessionId, messages: [{role: "user", content: question}], maxTokens: 16,
  });
  return {...r, fetches: window.behestDirect.tokenInfo().fetches};
}"""


def register(page: Page, base: str = "") -> str:
    """Create a fresh account through the UI and land on the chat page.

    Waits for the page's scripts first: Reflex adds them after hydration, and a form sent
    before auth.js is there is not sent at all.
    """
    username = f"u{secrets.token_hex(4)}"
    page.goto(f"{base}/register")
    page.wait_for_function("() => window.behestAuth !== undefined")
    page.get_by_test_id("username-input").fill(username)
    page.get_by_test_id("display_name-input").fill(f"User {username}")
    page.get_by_test_id("password-input").fill(PASSWORD)
    page.get_by_test_id("register").click()
    expect(page).to_have_url(re.compile(r"/chat/?$"))
    expect(page.get_by_test_id("display-name")).to_have_text(f"User {username}")
    page.wait_for_function("() => window.behestDirect !== undefined")
    return username


def public_url(app_server) -> str:
    """The gateway URL the app gives browsers (BEHEST_PUBLIC_BASE_URL's default)."""
    return app_server.gateway_url.replace("127.0.0.1", "localhost")


def token_requests(page: Page) -> list[str]:
    """Collects the page's requests to the token endpoint from now on."""
    seen: list[str] = []
    page.on(
        "request",
        lambda request: seen.append(request.method)
        if request.url.endswith("/api/behest/token")
        else None,
    )
    return seen


def stream(page: Page, app_server, question: str = "Tell me about lists.", session: str = ""):
    return page.evaluate(STREAM, [public_url(app_server), session, question])


def no_jwt_in_browser_storage(page: Page) -> None:
    stored = page.evaluate(
        """() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),
                                 document.cookie, window.behestDirect?.tokenInfo()])"""
    )
    assert not JWT.search(stored), "a token was kept outside page memory"
    for cookie in page.context.cookies():
        assert not JWT.search(cookie["value"]), f"cookie {cookie['name']} holds a token"


def test_the_example_page_streams_from_the_gateway(page: Page, app_server) -> None:
    register(page)
    gateway_calls: list[str] = []
    page.on(
        "request",
        lambda r: gateway_calls.append(r.method) if "/v1/chat/completions" in r.url else None,
    )
    before = app_server.gateway_stats()
    page.goto(EXAMPLE)
    expect(page.locator("#base-url")).to_have_text(public_url(app_server))
    page.evaluate(
        """() => {
          window.__lengths = [];
          new MutationObserver(() => {
            const n = document.getElementById("output").textContent.length;
            if (n && window.__lengths.at(-1) !== n) window.__lengths.push(n);
          }).observe(document.getElementById("output"),
                     {subtree: true, childList: true, characterData: true});
        }"""
    )
    page.locator("#question").fill("How do I read a file in Python?")
    page.locator("#send").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "done", timeout=30_000)
    lengths = page.evaluate("window.__lengths")
    assert len(lengths) >= 5, f"the answer arrived in {len(lengths)} visible step(s)"
    assert lengths == sorted(lengths)
    assert len(page.locator("#output").inner_text()) == lengths[-1]
    # Straight from the page to the gateway: a CORS preflight (which Playwright does not
    # list as a page request, but the gateway counts), then the POST.
    assert gateway_calls == ["POST"]
    after = app_server.gateway_stats()
    path = "/v1/chat/completions"
    assert after["requests_by_path"][path] - before["requests_by_path"].get(path, 0) == 2
    assert after["chat_requests"] - before["chat_requests"] == 1
    no_jwt_in_browser_storage(page)


def test_direct_streaming_is_counted_under_the_browsers_session(page: Page, app_server) -> None:
    register(page)
    session = f"conv-{uuid.uuid4()}"
    sent_headers: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: sent_headers.append(r.headers)
        if r.method == "POST" and "/v1/chat/completions" in r.url
        else None,
    )
    result = stream(page, app_server, session=session)
    assert result["status"] == "done", result
    assert result["text"] and result["kind"] == ""
    assert sent_headers[0]["x-session-id"] == session
    assert sent_headers[0]["authorization"].startswith("Bearer ey")
    assert "cookie" not in sent_headers[0]
    counted = [u for u in app_server.gateway_stats()["usage"] if u["session_id"] == session]
    assert len(counted) == 1
    assert counted[0]["completion_tokens"] == result["usage"]["completion_tokens"] > 0
    assert counted[0]["uid"].startswith("user-")


def test_a_token_near_expiry_is_fetched_again_before_the_call(page: Page, app_server) -> None:
    register(page)
    fetched = token_requests(page)
    first = stream(page, app_server)
    again = stream(page, app_server)
    assert (first["status"], again["status"]) == ("done", "done")
    assert again["fetches"] == 1, "a fresh token is reused"
    page.evaluate("window.behestDirect._debugExpireToken()")
    refreshed = stream(page, app_server)
    assert refreshed["status"] == "done" and refreshed["text"], refreshed
    assert refreshed["fetches"] == 2
    assert fetched == ["POST", "POST"]
    no_jwt_in_browser_storage(page)


def test_a_401_mid_conversation_refetches_the_token_once(page: Page, app_server) -> None:
    register(page)
    fetched = token_requests(page)
    assert stream(page, app_server)["status"] == "done"
    before = app_server.gateway_stats()["responses_by_status"].get("401", 0)
    app_server.set_fault(status=401, code="invalid_token", count=1)
    result = stream(page, app_server)
    assert result["status"] == "done" and result["text"], result
    assert result["fetches"] == 2
    assert fetched == ["POST", "POST"]
    assert app_server.gateway_stats()["responses_by_status"]["401"] == before + 1


def test_a_second_401_is_reported_not_retried_forever(page: Page, app_server) -> None:
    register(page)
    app_server.set_fault(status=401, code="invalid_token", count=2)
    try:
        result = stream(page, app_server)
    finally:
        app_server.clear_faults()
    assert (result["status"], result["kind"], result["httpStatus"]) == ("error", "auth", 401)
    assert result["fetches"] == 2


@pytest.mark.parametrize(
    ("plan", "kind", "http_status"),
    [
        ({"status": 402, "code": "quota_exceeded"}, "quota", 402),
        ({"status": 429, "code": "rate_limited", "retry_after": 7}, "rate_limited", 429),
        ({"status": 503, "code": "server_error", "count": 3}, "server", 503),
        ({"status": 403, "code": "forbidden"}, "forbidden", 403),
    ],
)
def test_error_answers_get_the_relays_kinds(
    page: Page, app_server, plan, kind, http_status
) -> None:
    register(page)
    app_server.set_fault(**plan)
    try:
        result = stream(page, app_server)
    finally:
        app_server.clear_faults()
    assert (result["status"], result["kind"], result["httpStatus"]) == ("error", kind, http_status)
    assert result["code"] == plan["code"]
    assert result["traceId"], "X-Trace-Id is readable cross-origin"
    if kind == "rate_limited":
        assert result["retryAfter"] == 7
        assert result["message"] == "Too many requests right now. Try again in 7 s."


def test_a_5xx_is_retried_like_the_relay(page: Page, app_server) -> None:
    register(page)
    app_server.set_fault(status=502, count=2)
    result = stream(page, app_server)
    assert result["status"] == "done" and result["text"], result


def test_a_cut_stream_keeps_its_text_and_says_cut(page: Page, app_server) -> None:
    register(page)
    app_server.set_fault(cut_after=4)
    cut = stream(page, app_server)
    assert (cut["status"], cut["kind"]) == ("error", "cut"), cut
    assert cut["text"], "the part that arrived is kept"
    app_server.set_fault(error_event_after=3, code="upstream_failed", message="model crashed")
    event = stream(page, app_server)
    assert (event["status"], event["kind"], event["code"]) == ("error", "cut", "upstream_failed")
    assert event["detail"] == "model crashed" and event["text"]


def test_an_unreachable_gateway_is_reported(page: Page, app_server) -> None:
    register(page)
    result = page.evaluate(
        """async (baseUrl) => window.behestDirect.streamChat(
             {baseUrl, messages: [{role: "user", content: "hi"}], maxRetries: 0})""",
        f"http://localhost:{free_port()}",
    )
    assert (result["status"], result["kind"]) == ("error", "unreachable")
    assert result["message"] == "The gateway could not be reached. Retry in a moment."


def test_stop_aborts_the_fetch_and_keeps_the_partial_answer(page: Page, app_server) -> None:
    register(page)
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<pre id=\"direct-draft\"></pre>')"
    )
    disconnects = app_server.gateway_stats()["client_disconnects"]
    app_server.set_fault(token_delay_ms=150)
    page.evaluate(
        """(baseUrl) => { window.__turn = window.behestDirect.runTurn({
             baseUrl, messages: [{role: "user", content: "Tell me about lists."}],
             target: "#direct-draft"}); }""",
        public_url(app_server),
    )
    expect(page.locator("#direct-draft")).not_to_be_empty(timeout=15_000)
    assert page.evaluate("window.behestDirect.stop()") is True
    result = page.evaluate("window.__turn")
    assert result["status"] == "stopped" and result["message"] == "Stopped."
    assert result["text"] and page.locator("#direct-draft").inner_text() == result["text"]
    assert page.evaluate("window.behestDirect.stop()") is False, "nothing left to stop"
    expect_disconnect(app_server.gateway_stats, disconnects)


def test_the_chat_hook_gives_a_turn_the_relay_can_store(page: Page, app_server) -> None:
    """What the chat page will do: run_turn_script via rx.call_script, then
    read_direct_turn on the result its callback receives."""
    register(page)
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<div data-testid=\"direct-draft\"></div>')"
    )
    script = run_turn_script(
        base_url=public_url(app_server),
        messages=[{"role": "user", "content": "Tell me about lists."}],
        session_id="conv-hook",
    )
    turn = read_direct_turn(page.evaluate(f"async () => {script}"))
    assert (turn.status, turn.error, turn.session_id) == ("done", None, "conv-hook")
    assert turn.text and turn.text == page.get_by_test_id("direct-draft").text_content()
    assert turn.usage is not None and turn.usage["completion_tokens"] > 0

    app_server.set_fault(status=402, code="quota_exceeded")
    refused = read_direct_turn(page.evaluate(f"async () => {script}"))
    assert refused.status == "error"
    assert isinstance(refused.error, errors.QuotaExceededError)
    assert describe_error(refused.error)[0] == "quota"


def expect_disconnect(stats, before: int) -> None:
    """The gateway saw the browser hang up (polled: the server notices asynchronously)."""
    deadline = time.monotonic() + 10
    while stats()["client_disconnects"] <= before:
        assert time.monotonic() < deadline, "the gateway never saw the browser hang up"
        time.sleep(0.05)  # polling the server's counter with a deadline


def test_the_page_reaches_only_its_own_users_data(page: Page, app_server, browser) -> None:
    register(page)
    thread = f"thread-{uuid.uuid4()}"
    assert (
        page.evaluate(
            """async ([baseUrl, threadId]) => (await window.behestDirect.streamChat({
                 baseUrl, threadId, maxTokens: 8,
                 messages: [{role: "user", content: "my secret plan"}]})).status""",
            [public_url(app_server), thread],
        )
        == "done"
    )
    other = browser.new_context(base_url=app_server.url)
    try:
        intruder = other.new_page()
        register(intruder)
        seen = intruder.evaluate(
            """async ([baseUrl, threadId]) => {
                 const {token} = await (await fetch("/api/behest/token", {method: "POST"})).json();
                 const get = async (path) => {
                   const headers = {Authorization: "Bearer " + token};
                   const r = await fetch(baseUrl + path, {headers});
                   return [r.status, await r.text()];
                 };
                 return [await get("/v1/threads"), await get(`/v1/threads/${threadId}/messages`)];
               }""",
            [public_url(app_server), thread],
        )
    finally:
        other.close()
    (list_status, listing), (messages_status, messages) = seen
    assert list_status == 200 and thread not in listing
    assert messages_status == 404 and "secret plan" not in messages


def test_pages_and_scripts_hold_no_secret(page: Page, app_server) -> None:
    register(page)
    for path in (EXAMPLE, "/direct.js", "/settings"):
        text = httpx.get(app_server.url + path, follow_redirects=True).text
        for secret in app_server.secrets:
            assert secret not in text, f"{path} leaks a secret"
        assert not JWT.search(text)
    # The example page carries no session: without a cookie its token call is refused.
    assert httpx.post(app_server.url + "/api/behest/token").status_code == 401
    assert re.search(r"credentials: \"include\"", httpx.get(app_server.url + EXAMPLE).text)
