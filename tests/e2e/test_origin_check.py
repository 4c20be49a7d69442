"""The settings page's "Check from this browser", and the transport choice, in Chromium.

The check runs in the page (`behestDirect.checkOrigin`): a token from the app, then a real
cross-origin call to the gateway (CORS preflight + a one-token request). The shared app lists
only http://localhost:<port> in BEHEST_ALLOWED_ORIGINS; the last test runs an app of its own
behind a fixed address whose origin is not listed, then restarts it with that origin added.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_browser_direct import register
from tests.e2e.test_chat_flow import JWT
from tests.fixtures.app import ROOT, free_port, project_copy, run_app

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "test-artifacts"


def run_check(page: Page, expected: str) -> None:
    page.get_by_test_id("origin-check-run").click()
    expect(page.get_by_test_id("origin-check-result")).to_have_attribute(
        "data-result", expected, timeout=20_000
    )


def test_the_check_passes_from_the_allowed_origin(page: Page, app_server, recorder) -> None:
    register(page)
    page.get_by_test_id("nav-settings").click()
    expect(page.get_by_test_id("origin-check")).to_have_attribute("data-allowed", "true")
    expect(page.get_by_test_id("setting-public-base-url")).to_have_text(
        app_server.gateway_url.replace("127.0.0.1", "localhost")
    )
    run_check(page, "pass")
    expect(page.get_by_test_id("origin-check-message")).to_contain_text(
        f"Passed: this browser ({app_server.url}) got a token"
    )
    expect(page.get_by_test_id("origin-check-fix")).to_have_count(0)
    # The page reports a verdict to the server, never the token it used.
    assert recorder.frames and not any(JWT.search(frame) for frame in recorder.frames)


def test_the_token_endpoint_never_answers_with_wildcard_cors(app_server) -> None:
    url = f"{app_server.url}/api/behest/token"
    preflight = {"Access-Control-Request-Method": "POST"}
    for origin in ("http://evil.example", app_server.gateway_url):
        refused = httpx.options(url, headers={"Origin": origin, **preflight})
        assert refused.status_code >= 400
        assert "access-control-allow-origin" not in refused.headers
        post = httpx.post(url, headers={"Origin": origin})
        assert post.status_code == 403
        assert "access-control-allow-origin" not in post.headers
    allowed = httpx.options(url, headers={"Origin": app_server.url, **preflight})
    assert allowed.status_code in (200, 204)
    assert allowed.headers["access-control-allow-origin"] == app_server.url


def test_the_check_says_when_the_token_endpoint_fails(page: Page, app_server) -> None:
    register(page)
    page.goto("/settings")
    expect(page.get_by_test_id("origin-check")).to_be_visible()
    # The gateway refuses to mint, three times: the app's client retries 5xx twice.
    app_server.set_fault(path="/v1/auth/mint", status=500, count=3)
    try:
        run_check(page, "token_unreachable")
    finally:
        app_server.clear_faults()
    expect(page.get_by_test_id("origin-check-message")).to_contain_text(
        "The app's token endpoint (/api/behest/token) gave no token"
    )
    expect(page.get_by_test_id("origin-check-detail")).to_contain_text("HTTP 502")
    run_check(page, "pass")


def test_the_check_tells_an_unreachable_gateway_and_a_signed_out_user(
    page: Page, app_server
) -> None:
    dead = f"http://localhost:{free_port()}"
    check = "async (baseUrl) => window.behestDirect.checkOrigin({baseUrl})"
    page.goto("/login")
    page.wait_for_function("() => window.behestDirect !== undefined")  # added after hydration
    signed_out = page.evaluate(check, dead)
    assert signed_out["result"] == "signed_out"
    register(page)
    report = page.evaluate(check, dead)
    assert report["result"] == "gateway_unreachable"
    assert report["origin"] == app_server.url
    # The app's server still reaches its gateway, so the URL for browsers is suspect.
    assert "the URL for browsers may be wrong" in report["detail"]


def test_the_transport_choice_is_stored_per_user(page: Page, app_server, browser) -> None:
    username = register(page)
    page.goto("/settings")
    choice = page.get_by_test_id("transport")
    expect(choice).to_have_attribute("data-value", "relay")
    page.get_by_test_id("transport-direct").click()
    expect(choice).to_have_attribute("data-value", "direct")
    db_path = app_server.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(db_path) as db:
        stored = db.execute(
            "SELECT p.transport FROM transport_preference p JOIN user u ON u.id = p.user_id"
            " WHERE u.username = ?",
            (username,),
        ).fetchone()
    assert stored == ("direct",)
    page.reload()
    expect(page.get_by_test_id("transport")).to_have_attribute("data-value", "direct")
    expect(page.get_by_test_id("transport-direct")).to_have_attribute("data-state", "checked")

    other = browser.new_context(base_url=app_server.url)
    try:
        someone = other.new_page()
        register(someone)
        someone.goto("/settings")
        expect(someone.get_by_test_id("transport")).to_have_attribute("data-value", "relay")
    finally:
        other.close()
    page.get_by_test_id("transport").scroll_into_view_if_needed()  # for the screenshot


class Forwarder:
    """A fixed loopback address in front of the app, like a reverse proxy.

    `run_app` picks the app's port itself, so a restarted app listens elsewhere; behind
    this forwarder the browser keeps one origin across the restart. Bytes are copied both
    ways unchanged (HTTP and websockets alike).
    """

    def __init__(self) -> None:
        self.target_port = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


def test_an_unlisted_origin_is_blocked_until_it_is_added(
    browser: Browser, tmp_path: Path
) -> None:
    """Blocked by CORS and told the exact line; after adding that line and restarting the
    same app (same project copy, database and key), the check passes from the same origin.
    """
    forwarder = Forwarder()
    origin = f"http://127.0.0.1:{forwarder.port}"
    fixed = {
        "APP_ORIGINS": origin,  # the app as browsers reach it: through the forwarder
        "BEHEST_KEY": "behest_sk_live_" + secrets.token_hex(16),
        "BEHEST_ALLOWED_ORIGINS": "http://localhost:5173",
    }
    line = f"BEHEST_ALLOWED_ORIGINS=http://localhost:5173,{origin}"
    root = project_copy(tmp_path / "project")
    workdir = tmp_path / "app"
    workdir.mkdir()
    context = browser.new_context(viewport={"width": 1200, "height": 850})
    console: list[str] = []
    page_errors: list[str] = []
    page = context.new_page()
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        with run_app(workdir, root, **fixed) as first:
            forwarder.target_port = int(first.env["APP_PORT"])
            gateway = f"http://localhost:{first.env['BEHEST_GATEWAY_PORT']}"
            register(page, origin)
            # The quickstart's browser code, served from the unlisted origin: CORS stops it.
            page.goto(f"{origin}/examples/browser-direct")
            page.locator("#send").click()
            status = page.locator("#status")
            expect(status).to_have_attribute("data-status", "error", timeout=15_000)
            expect(status).to_contain_text(f"add {origin} to the project's Allowed Origins")
            blocked = [
                m
                for m in console
                if "blocked by CORS policy" in m
                and f"from origin '{origin}'" in m
                and f"'{gateway}/v1/chat/completions'" in m
            ]
            assert blocked, f"no CORS refusal in the console: {console}"

            page.goto(f"{origin}/settings")
            expect(page.get_by_test_id("origin-check")).to_have_attribute("data-allowed", "false")
            run_check(page, "origin_blocked")
            expect(page.get_by_test_id("origin-check-message")).to_contain_text(
                f"Blocked by CORS: the gateway at {gateway} is up, but {origin} is not an "
                "allowed origin. Add it to .env and restart the app:"
            )
            fix = page.get_by_test_id("origin-check-fix")
            expect(fix).to_contain_text(line)
            fix.scroll_into_view_if_needed()
            page.screenshot(path=str(_artifact("origin_check_blocked")))
            suggested = re.search(r"BEHEST_ALLOWED_ORIGINS=\S+", fix.inner_text())
            assert suggested is not None and suggested.group(0) == line

        # Restart with the suggested line (same copy, database and key): the check passes.
        added = {**fixed, "BEHEST_ALLOWED_ORIGINS": suggested.group(0).split("=", 1)[1]}
        with run_app(workdir, root, **added) as second:
            forwarder.target_port = int(second.env["APP_PORT"])
            page.goto(f"{origin}/settings")
            expect(page.get_by_test_id("display-name")).to_be_visible()  # still signed in
            expect(page.get_by_test_id("origin-check")).to_have_attribute("data-allowed", "true")
            run_check(page, "pass")
            page.get_by_test_id("origin-check-result").scroll_into_view_if_needed()
            page.screenshot(path=str(_artifact("origin_check_pass_after_restart")))
            page.goto(f"{origin}/examples/browser-direct")
            page.locator("#send").click()
            expect(page.locator("#status")).to_have_attribute(
                "data-status", "done", timeout=30_000
            )
            assert page.locator("#output").inner_text()
    finally:
        context.close()
        forwarder.close()
    assert page_errors == []


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"

