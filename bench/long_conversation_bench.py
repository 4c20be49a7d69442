"""A turn in a long conversation vs. a short one, as the page feels it.

Starts the app the way `make run` does (one worker, SQLite, embedded gateway, offline
model, the gateway's limits lifted), registers a user, writes two conversations straight
into the database (one question and answer; 25 of them, each answer a screenful of
markdown with a code block), then asks ``--turns`` short questions in each through
headless Chromium. Per turn: time from Enter to the question on the page, to the finished
answer, the page's main-thread long tasks (over 50 ms, the page frozen) and the websocket
bytes received. The short conversation is the baseline of the same run. Prints one
table; asserts nothing.

    .venv/bin/python bench/long_conversation_bench.py [--turns 5]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay_bench import register_user, running_app

from tests.e2e.test_conversations import seed_long_conversation
from tests.fixtures.app import CHROMIUM, CHROMIUM_ARGS

ANSWER = (
    "## Part {n}\n\nItem {n} works like this, with *emphasis* and `inline code` along the "
    "way.\n\n- the first point\n- the second point\n- the third point\n\n```python\n"
    "def handle_{n}(value: int) -> int:\n    return value * {n}\n```\n\n" + "More prose. " * 60
)


def long_answer(n: int) -> str:
    return ANSWER.format(n=n)


WATCH_LONG_TASKS = """() => {
  window.__long = 0;
  new PerformanceObserver(list => {
    for (const entry of list.getEntries()) window.__long += entry.duration;
  }).observe({type: 'longtask'});
}"""


def one_turn(page: Page, url: str, question: str, received: list[int]) -> dict[str, float]:
    """Open the conversation at ``url``, ask ``question``, time what the page shows."""
    page.goto(url)
    messages = page.get_by_test_id("message")
    expect(messages.last).to_have_attribute("data-status", "done", timeout=30_000)
    page.evaluate(WATCH_LONG_TASKS)
    box = page.get_by_test_id("composer-input")
    box.fill(question)
    received.clear()
    started = time.perf_counter()
    box.press("Enter")
    expect(page.locator('[data-testid="message"][data-role="user"]', has_text=question)
           ).to_be_visible(timeout=30_000)
    shown = time.perf_counter()
    expect(messages.last).to_have_attribute("data-role", "assistant", timeout=30_000)
    expect(messages.last).to_have_attribute("data-status", "done", timeout=30_000)
    done = time.perf_counter()
    page.wait_for_timeout(300)  # a long task is reported once it ends
    return {
        "shown": (shown - started) * 1000,
        "done": (done - started) * 1000,
        "long": page.evaluate("window.__long"),
        "bytes": sum(received),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    print("Starting the app (one worker, SQLite, embedded gateway) ...")
    results: dict[str, list[dict[str, float]]] = {}
    with running_app() as app, sync_playwright() as pw:
        username = f"bench{secrets.token_hex(3)}"
        name, _, value = register_user(app.url, username=username).partition("=")
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=app.url, viewport={"width": 1200, "height": 850})
        context.add_cookies([{"name": name, "value": value, "url": app.url}])
        page = context.new_page()
        received: list[int] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: received.append(len(p))))
        conversations = {
            "2 messages": seed_long_conversation(app, username, 1, long_answer),
            "50 messages": seed_long_conversation(app, username, 25, long_answer),
        }
        for label, cid in conversations.items():
            one_turn(page, f"/chat/{cid}", "echo: warm up", received)  # not counted
            results[label] = [
                one_turn(page, f"/chat/{cid}", f"echo: turn {n}", received)
                for n in range(args.turns)
            ]
        browser.close()
    print(f"\nOne short turn, {args.turns} per conversation (medians)")
    print(f"  {'conversation':<14}{'question shown ms':>19}{'answer done ms':>16}"
          f"{'long tasks ms':>15}{'ws kB':>8}")
    for label, turns in results.items():
        def median(key: str, turns: list[dict[str, float]] = turns) -> float:
            return statistics.median(turn[key] for turn in turns)

        print(f"  {label:<14}{median('shown'):>19.0f}{median('done'):>16.0f}"
              f"{median('long'):>15.0f}{median('bytes') / 1000:>8.1f}")


if __name__ == "__main__":
    main()
