"""Opening a long conversation: time to show it and websocket bytes, in headless Chromium.

Starts the app the way `make run` does (from a project copy), writes a conversation of N
question/answer turns into its database, then opens it three ways and prints one table:

- a full page load of ``/chat/<id>`` (websocket, hydrate, first page; scripts cached by a
  first load of an empty ``/chat``, which is shown too, cold cache);
- switching to it from the sidebar of an open tab (the everyday case);
- "Load older messages" once (the next page of 50 messages).

For each: milliseconds until the newest message is on screen (or the older page is), the
websocket bytes the page received, and how many messages the DOM holds. The page gets the
newest 50 messages only, so the figures barely depend on N.

    .venv/bin/python bench/conversation_bench.py [--turns 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.test_conversations import seed_long_conversation
from tests.fixtures.app import CHROMIUM, CHROMIUM_ARGS, project_copy, run_app

WATCH = """(needle) => { window.__shownAt = null;
  const check = () => {
    if (!window.__shownAt && document.body && document.body.innerText.includes(needle))
      window.__shownAt = performance.now();
  };
  check();
  new MutationObserver(check).observe(document,
    {subtree: true, childList: true, characterData: true}); }"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    newest = f"Answer {args.turns - 1}: item"
    older = f"Question {args.turns - 50}: how"
    results: dict[str, list[tuple[float, int, int]]] = {
        "empty": [],
        "page load": [],
        "sidebar": [],
        "older": [],
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_app(Path(tmp), project_copy(Path(tempfile.mkdtemp(dir=tmp)))) as app,
        sync_playwright() as pw,
    ):
        username = f"bench{secrets.token_hex(3)}"
        registered = httpx.post(
            f"{app.url}/api/auth/register",
            json={"username": username, "display_name": "Bench", "password": "bench password"},
            headers={"Origin": app.url},
        )
        registered.raise_for_status()
        cid = seed_long_conversation(app, username, args.turns)
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        cookies = [{"name": k, "value": v, "url": app.url} for k, v in registered.cookies.items()]
        for _ in range(args.runs):
            context = browser.new_context(base_url=app.url)
            context.add_cookies(cookies)
            page = context.new_page()
            received = {"bytes": 0}
            page.on("websocket", _counter(received))
            page.add_init_script(
                f"({WATCH})(location.pathname.length > 7 ? {newest!r} : 'Ask a question to start.')"
            )
            page.goto("/chat")
            page.wait_for_function("() => window.__shownAt !== null", timeout=30_000)
            results["empty"].append((page.evaluate("window.__shownAt"), received["bytes"], 0))
            received["bytes"] = 0
            page.goto(f"/chat/{cid}")
            page.wait_for_function("() => window.__shownAt !== null", timeout=30_000)
            load_ms = page.evaluate("window.__shownAt")  # since navigation start
            results["page load"].append((load_ms, received["bytes"], _count(page)))

            page.goto("/chat")
            page.get_by_test_id("empty-chat").wait_for()
            page.evaluate(WATCH, newest)
            before, clicked = received["bytes"], page.evaluate("performance.now()")
            page.locator(
                f'[data-conversation-id="{cid}"] [data-testid="conversation-link"]'
            ).click()
            page.wait_for_function("() => window.__shownAt !== null")
            shown = page.evaluate("window.__shownAt") - clicked
            page.wait_for_timeout(300)  # let the last deltas of the switch arrive before counting
            results["sidebar"].append((shown, received["bytes"] - before, _count(page)))

            page.evaluate(WATCH, older)
            before, clicked = received["bytes"], page.evaluate("performance.now()")
            page.get_by_test_id("load-older").click()
            page.wait_for_function("() => window.__shownAt !== null")
            shown = page.evaluate("window.__shownAt") - clicked
            results["older"].append((shown, received["bytes"] - before, _count(page)))
            context.close()
        browser.close()

    print(
        f"\nOpening a {args.turns:,}-turn conversation ({2 * args.turns:,} messages), "
        f"median of {args.runs}\n"
    )
    print(f"{'case':<26}{'ms to show':>12}{'ws bytes':>12}{'messages in DOM':>18}")
    labels = {
        "empty": "new chat, cold cache",
        "page load": "page load, warm cache",
        "sidebar": "switch from the sidebar",
        "older": "load older (next 50)",
    }
    for key, rows in results.items():
        ms = statistics.median(r[0] for r in rows)
        sent = statistics.median(r[1] for r in rows)
        print(f"{labels[key]:<26}{ms:>12.0f}{sent:>12,.0f}{rows[-1][2]:>18}")
    print("\ntarget: under 1,000 ms to show; bytes independent of the conversation's length")
    return 0


def _counter(received: dict[str, int]):
    """A websocket listener adding every received frame's size to ``received["bytes"]``."""

    def on_websocket(ws) -> None:
        def count(payload) -> None:
            received["bytes"] += len(payload)

        ws.on("framereceived", count)

    return on_websocket


def _count(page) -> int:
    return int(page.evaluate("document.querySelectorAll('[data-testid=message]').length"))


if __name__ == "__main__":
    sys.exit(main())
