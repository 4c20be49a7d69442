"""Websocket bytes and UI updates for one 2,000-token reply: coalesced pieces vs per token.

Starts the app twice the way `make run` does (embedded gateway, offline model), once with
the default `APP_STREAM_FLUSH_MS=50` and once with `0` (a push per token, the naive way),
signs a user in, asks for a 2,000-token answer in headless Chromium and counts what the
websocket carried from the send to the finished answer, and how often the reply's DOM
changed, and the page's main-thread long tasks (over 50 ms: the page frozen). The reply's
own size is the stored answer's text (UTF-8). Prints one table.

    .venv/bin/python bench/ui_stream_bench.py [--tokens 2000] [--delay-ms 2]
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.app import CHROMIUM, CHROMIUM_ARGS, project_copy, run_app

COUNT_UPDATES = """() => {
  window.__updates = 0;
  window.__long = 0;
  new PerformanceObserver(list => {
    for (const entry of list.getEntries()) window.__long += entry.duration;
  }).observe({type: 'longtask'});
  new MutationObserver(() => {
    const streaming = '[data-testid="message"][data-status="streaming"]';
    if (document.querySelector(streaming)) window.__updates++;
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def measure(flush_ms: int, tokens: int, delay_ms: int) -> dict[str, float]:
    """Run one app with the given flush interval and measure one long reply."""
    with tempfile.TemporaryDirectory() as tmp, run_app(
        workdir := Path(tmp),
        project_copy(Path(tempfile.mkdtemp(dir=tmp))),
        APP_STREAM_FLUSH_MS=str(flush_ms),
        BEHEST_GATEWAY_TOKEN_DELAY_MS=str(delay_ms),
    ) as app, sync_playwright() as pw:
        username = f"bench{secrets.token_hex(3)}"
        registered = httpx.post(
            f"{app.url}/api/auth/register",
            json={"username": username, "display_name": "Bench", "password": "bench password"},
            headers={"Origin": app.url},
        )
        registered.raise_for_status()
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=app.url)
        context.add_cookies(
            [{"name": k, "value": v, "url": app.url} for k, v in registered.cookies.items()]
        )
        page = context.new_page()
        received = {"bytes": 0, "frames": 0}

        def on_ws(ws) -> None:
            def count(payload) -> None:
                data = payload if isinstance(payload, bytes) else payload.encode()
                received["bytes"] += len(data)
                received["frames"] += 1

            ws.on("framereceived", count)

        page.on("websocket", on_ws)
        page.goto("/chat")
        page.get_by_test_id("composer-input").wait_for()
        page.evaluate(COUNT_UPDATES)
        before = dict(received)
        started = time.perf_counter()
        page.get_by_test_id("composer-input").fill(f"long: {tokens}")
        page.get_by_test_id("composer-input").press("Enter")
        done = page.locator('[data-testid="message"][data-role="assistant"][data-status="done"]')
        done.wait_for(timeout=120_000)
        elapsed = time.perf_counter() - started
        updates = page.evaluate("window.__updates")
        page.wait_for_timeout(300)  # a long task is reported once it ends
        long_tasks = page.evaluate("window.__long")
        browser.close()
        with sqlite3.connect(workdir / "app.db") as db:
            (reply,) = db.execute("SELECT content FROM message WHERE role = 'assistant'").fetchone()
    return {
        "flush_ms": flush_ms,
        "ws_bytes": received["bytes"] - before["bytes"],
        "ws_frames": received["frames"] - before["frames"],
        "dom_updates": updates,
        "reply_bytes": len(reply.encode()),
        "seconds": elapsed,
        "long_ms": long_tasks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--delay-ms", type=int, default=2, help="offline model pause per token")
    args = parser.parse_args()
    rows = [measure(ms, args.tokens, args.delay_ms) for ms in (50, 0)]
    print(f"\nOne {args.tokens}-token reply, offline model at {args.delay_ms} ms/token\n")
    print(
        f"{'mode':<22}{'ws bytes':>12}{'frames':>8}{'DOM updates':>13}"
        f"{'bytes/reply':>13}{'total s':>9}{'long tasks s':>14}"
    )
    for row in rows:
        mode = "coalesced pieces" if row["flush_ms"] else "per token (naive)"
        ratio = row["ws_bytes"] / row["reply_bytes"]
        print(
            f"{mode:<22}{row['ws_bytes']:>12,}{row['ws_frames']:>8}{row['dom_updates']:>13}"
            f"{ratio:>12.1f}x{row['seconds']:>9.2f}{row['long_ms'] / 1000:>14.2f}"
        )
    print("\ntarget: coalesced websocket bytes ≤ 3 × the reply's own size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
