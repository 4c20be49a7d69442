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
import sqlite3
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay_bench import running_app

from tests.fixtures.app import CHROMIUM, CHROMIUM_ARGS

ANSWER = (
    "## Part {n}\n\nItem {n} works like this, with *emphasis* and `inline code` along the "
    "way.\n\n- the first point\n- the second point\n- the third point\n\n```python\n"
    "def handle_{n}(value: int) -> int:\n    return value * {n}\n```\n\n" + "More prose. " * 60
)
WATCH_LONG_TASKS = """() => {
  window.__long = 0;
  new PerformanceObserver(list => {
    for (const entry of list.getEntries()) window.__long += entry.duration;
  }).observe({type: 'longtask'});
}"""


def seed(db_path: str, username: str, turns: int) -> str:
    """Write a conversation of ``turns`` questions and answers; return its id."""
    now = datetime.now(UTC).replace(tzinfo=None)

    def stamp(i: int) -> str:
        return (now - timedelta(seconds=turns * 2 - i)).strftime("%Y-%m-%d %H:%M:%S.%f")

    cid = uuid.uuid4().hex
    with sqlite3.connect(db_path, timeout=15) as db:
        (user_id,) = db.execute("SELECT id FROM user WHERE username = ?", (username,)).fetchone()
        (first,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM message").fetchone()
        rows = []
        for i in range(turns * 2):
            role = "user" if i % 2 == 0 else "assistant"
            text = f"Question {i // 2}?" if role == "user" else ANSWER.format(n=i // 2)
            rows.append((first + i, cid, first + i - 1 if i else None, i, role, text, stamp(i)))
        db.execute(
            "INSERT INTO conversation (id, user_id, title, title_is_custom, session_id, leaf_id,"
            " draft, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, '', ?, ?)",
            (cid, user_id, f"{turns} turns", str(uuid.uuid4()), first + turns * 2 - 1,
             stamp(0), stamp(turns * 2)),
        )
        db.executemany(
            "INSERT INTO message (id, conversation_id, parent_id, depth, role, content, status,"
            " error_kind, error, trace_id, prompt_tokens, completion_tokens, usage_estimated,"
            " run_id, heartbeat_at, stop_requested, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'done', '', '', '', 0, 0, 0, '', NULL, 0, ?, ?)",
            [(*row, row[-1]) for row in rows],
        )
    return cid


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
        db_path = app.env["DATABASE_URL"].removeprefix("sqlite:///")
        username = f"bench{secrets.token_hex(3)}"
        registered = httpx.post(
            f"{app.url}/api/auth/register",
            json={"username": username, "display_name": "Bench", "password": "bench password"},
            headers={"Origin": app.url},
        )
        registered.raise_for_status()
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=app.url, viewport={"width": 1200, "height": 850})
        context.add_cookies(
            [{"name": k, "value": v, "url": app.url} for k, v in registered.cookies.items()]
        )
        page = context.new_page()
        received: list[int] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: received.append(len(p))))
        conversations = {
            "2 messages": seed(db_path, username, 1),
            "50 messages": seed(db_path, username, 25),
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
