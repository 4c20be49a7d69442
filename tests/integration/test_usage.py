"""Usage the app records equals what the gateway billed, per user and per session.

A scripted conversation runs through Reflex's event processor against the real gateway;
then the app's figures (ledger, usage page, CSV, admin report) are compared with the
gateway's ``GET /v1/billing/usage`` read with a token of the same user.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from behest_chat.conversations import budgets, store
from behest_chat.usage import attribution, per_conversation, per_day, user_csv
from tests.fixtures.gateway import bearer
from tests.integration.test_chat_state import app_env, shown_rows  # noqa: F401  (fixture)
from tests.integration.test_conversations_lifecycle import alice, server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def billed(gateway, user, session_id: str | None = None) -> dict:
    token = gateway.mint(user_id=user.behest_user_id)
    params = {"session_id": session_id} if session_id else {}
    response = httpx.get(
        f"{gateway.base_url}/v1/billing/usage", params=params, headers=bearer(token), timeout=10
    )
    response.raise_for_status()
    return response.json()


async def test_app_usage_equals_the_gateway_bill_per_user_and_session(
    server,  # noqa: F811
    alice,  # noqa: F811
    gateway,
    app_db,
) -> None:
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "Tell me about lists."})
    await tab.run("send", form_data={"prompt": "And tuples?"})
    state = await tab.state()
    first_id = state.conversation_id  # the state object lives on: keep the values
    await tab.run("regenerate", message_id=shown_rows(state)[-1]["id"])
    await tab.open("/chat/")
    await tab.run("send", form_data={"prompt": "echo: a second conversation"})
    second_id = (await tab.state()).conversation_id
    sessions = {
        c.id: c.session_id
        for c in (
            store.get_conversation(alice.user_id, first_id),
            store.get_conversation(alice.user_id, second_id),
        )
    }
    assert len(set(sessions.values())) == 2, "each conversation has its own Behest session"

    bill = billed(gateway, alice)
    app_days = per_day(alice.user_id, datetime.now(UTC).date(), datetime.now(UTC).date())
    assert app_days[0].requests == bill["platform"]["requests"] == 4
    assert app_days[0].prompt_tokens == bill["platform"]["input_tokens"]
    assert app_days[0].completion_tokens == bill["platform"]["output_tokens"]

    for row in per_conversation(alice.user_id):
        session_bill = billed(gateway, alice, row.session_id)["platform"]
        assert row.session_id == sessions[row.conversation_id]
        assert (row.requests, row.prompt_tokens, row.completion_tokens) == (
            session_bill["requests"],
            session_bill["input_tokens"],
            session_bill["output_tokens"],
        )
    # The conversation's tokens as the budget check reads them.
    allowance = budgets.allowance_for(
        alice.user_id, 1, first_id, daily_budget=0, conversation_cap=None
    )
    assert allowance.used_in_conversation == sum(
        billed(gateway, alice, sessions[first_id])["platform"][k]
        for k in ("input_tokens", "output_tokens")
    )

    # The CSV holds the same figures, one row per day and conversation.
    rows = list(
        csv.DictReader(io.StringIO(user_csv(alice.user_id, app_days[0].day, app_days[0].day)))
    )
    assert sum(int(r["total_tokens"]) for r in rows) == app_days[0].total_tokens
    assert {r["session_id"] for r in rows} == set(sessions.values())

    # The admin report attributes the same tokens to the user and each session.
    report = attribution(app_days[0].day)
    assert {(r.username, r.behest_user_id, r.session_id) for r in report} == {
        ("alice", alice.behest_user_id, s) for s in sessions.values()
    }
    assert sum(r.total_tokens for r in report) == app_days[0].total_tokens

    result = run_cli("report", "--since", app_days[0].day.isoformat(), database_url=app_db.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Token usage per user and session, ")
    for session_id in sessions.values():
        assert any(line.startswith("alice") and session_id in line for line in lines)
    total_line = lines[-1]
    assert total_line.startswith("total") and total_line.split()[-1] == str(
        app_days[0].total_tokens
    )
    as_csv = run_cli(
        "report", "--since", app_days[0].day.isoformat(), "--csv", database_url=app_db.url
    )
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert sum(int(r["total_tokens"]) for r in parsed) == app_days[0].total_tokens


async def test_an_interrupted_stream_is_counted_too(server, alice, gateway) -> None:  # noqa: F811
    gateway.set_fault(cut_after=20)
    tab = await server.tab(alice)
    await tab.run("send", form_data={"prompt": "long: 200"})
    reply = shown_rows(await tab.state())[-1]
    assert reply["status"] == "error" and reply["tokens"].startswith("≈")
    gateway_total = sum(
        billed(gateway, alice)["platform"][k] for k in ("input_tokens", "output_tokens")
    )
    app_total = budgets.allowance_for(
        alice.user_id, 1, None, daily_budget=0, conversation_cap=None
    ).used_today
    # Estimated from what arrived: never below the gateway's count by more than a frame.
    assert app_total >= gateway_total - 2 and app_total <= gateway_total * 1.5


def run_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "behest_chat.usage", *args],
        cwd=ROOT,
        env={**env, "DATABASE_URL": database_url, "APP_ENV_FILE": os.devnull},
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the admin command in this process (same database as the test)."""
    from behest_chat.usage.__main__ import main

    try:
        status = main(list(args))
    except SystemExit as exited:  # argparse's usage errors
        status = int(exited.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_sets_budgets_and_explains_bad_input(app_db, capsys) -> None:
    from behest_chat.accounts import service as accounts

    user = accounts.register("erin", "Erin", "correct horse battery")
    assert cli(capsys, "set-budget", "Erin", "--daily", "1200") == (
        0,
        "erin: daily 1,200, per conversation settings (0 = no limit)\n",
        "",
    )
    assert budgets.get_user_budget(user.user_id).daily_tokens == 1200
    assert cli(capsys, "set-budget", "erin") == (0, "erin: budgets from the settings\n", "")
    assert budgets.get_user_budget(user.user_id) is None

    assert cli(capsys, "set-budget", "nobody", "--daily", "5") == (
        1,
        "",
        "behest_chat.usage: username: no user named 'nobody'\n",
    )
    status, _, err = cli(capsys, "report", "--since", "yesterday")
    assert status == 2 and "is not a date like 2026-11-01" in err
    status, _, err = cli(capsys, "report", "--since", "2026-11-02", "--until", "2026-11-01")
    assert status == 1 and err.startswith("behest_chat.usage: --until")
    status, out, _ = cli(capsys, "report", "--since", "2026-11-01")
    assert status == 0 and out.splitlines()[-1].split()[-1] == "0"
