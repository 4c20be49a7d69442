"""The fixed CPU cost of a chat turn: short replies one after another, through the app.

    python bench/turn_cost_bench.py [--turns 200] [--database sqlite|postgresql]

One worker, started as the README does (``scripts/run``), offline model with no delay per
token: on SQLite with the embedded gateway (default), or with ``--database postgresql`` in
scale-out mode (a PostgreSQL database and a redis-server of its own, the gateway as its own
process; PostgreSQL's CPU is reported beside the app's). One signed-in user (headless
websocket client of ``relay_bench.py``) asks ``echo: hello there`` ``--turns`` times, each
in a new conversation (page loads included, as when a person clicks "New chat" and the app
then opens the new conversation's page), then as many times ten to a conversation (the
daily token budget is lifted: a conversation resends its history). Baseline in the same
run: the same number of short replies read from the same gateway with ``BehestClient``.
Reported: CPU seconds of the app's processes per turn (the gateway included, so the
baseline is what the gateway alone costs), and wall time per turn. Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concurrency_bench import app_pgid, group_cpu_seconds, scale_out_app, split_cpu_seconds
from relay_bench import ROOT, ReflexSocket, chat_turn, register_user, running_app

from behest_chat.behest import BehestClient

PROMPT = "echo: hello there"
WARM_UP = 5


async def through_app(
    tab: ReflexSocket, turns: int, pgid: int, *, per_conversation: int
) -> tuple[float, float, float]:
    """CPU ms (app, PostgreSQL) and wall ms per turn asked through the app's websocket,
    starting a new conversation every ``per_conversation`` turns."""
    for n in range(WARM_UP):
        await chat_turn(tab, PROMPT, 30, new_conversation=n % per_conversation == 0)
    cpu, wall = group_cpu_seconds(pgid), time.monotonic()
    pg = split_cpu_seconds(pgid)["postgres"]
    for n in range(turns):
        await chat_turn(tab, PROMPT, 30, new_conversation=n % per_conversation == 0)
    return ((group_cpu_seconds(pgid) - cpu) / turns * 1000,
            (split_cpu_seconds(pgid)["postgres"] - pg) / turns * 1000,
            (time.monotonic() - wall) / turns * 1000)


async def direct(app: Any, turns: int, pgid: int) -> tuple[float, float, float]:
    """CPU ms (of the app's processes: the gateway) and wall ms per reply read directly."""
    async with BehestClient(key=app.env["BEHEST_KEY"], base_url=app.gateway_url) as client:

        async def one() -> None:
            stream = await client.chat.completions.create(
                messages=[{"role": "user", "content": PROMPT}], stream=True,
                user_id="bench-direct", tier=1, stream_options={"include_usage": True})
            async with stream:
                async for _ in stream:
                    pass

        for _ in range(WARM_UP):
            await one()
        cpu, wall = group_cpu_seconds(pgid), time.monotonic()
        for _ in range(turns):
            await one()
        return ((group_cpu_seconds(pgid) - cpu) / turns * 1000, 0.0,
                (time.monotonic() - wall) / turns * 1000)


async def bench(app: Any, turns: int) -> dict[str, tuple[float, float, float]]:
    pgid = app_pgid(app)
    with httpx.Client(timeout=60) as http:
        cookie = await asyncio.to_thread(register_user, app.url, http)
    tab = ReflexSocket(app.url, cookie)
    await tab.connect()
    try:
        return {
            "through the app, new conversation each": await through_app(
                tab, turns, pgid, per_conversation=1),
            "through the app, ten per conversation": await through_app(
                tab, turns, pgid, per_conversation=10),
            "gateway directly (baseline)": await direct(app, turns, pgid),
        }
    finally:
        await tab.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if args.database == "sqlite":
        print("Starting the app (one worker, SQLite, embedded gateway, no delay per token) ...")
        app_context = running_app(
            BEHEST_GATEWAY_TOKEN_DELAY_MS="0", APP_DAILY_TOKEN_BUDGET_FREE="0")
    else:
        print("Starting the app (one worker, PostgreSQL + Redis, gateway process, "
              "no delay per token) ...")
        app_context = scale_out_app(1, "0", 50, APP_DAILY_TOKEN_BUDGET_FREE="0")
    with app_context as app:
        figures = asyncio.run(bench(app, args.turns))
    print(f"\nShort replies, {args.turns} per row, one user, {args.database} (ms per turn)")
    print(f"  {'':<42}{'CPU':>8}{'PG CPU':>8}{'wall':>8}")
    for name, (cpu, pg, wall) in figures.items():
        print(f"  {name:<42}{cpu:>8.2f}{pg:>8.2f}{wall:>8.2f}")
    baseline = figures["gateway directly (baseline)"][0]
    own = figures["through the app, ten per conversation"][0] - baseline
    print(f"The app's own CPU per turn, ten per conversation: {own:.2f} ms")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
