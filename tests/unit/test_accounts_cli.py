"""The admin CLI, run as a real subprocess against a migrated SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from behest_chat.accounts.service import find_user, register

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


def accounts(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "behest_chat.accounts", *args],
        cwd=ROOT,
        env={**env, "DATABASE_URL": database_url, "APP_ENV_FILE": os.devnull},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_set_tier_by_name(app_db) -> None:
    register("alice", "Alice", PASSWORD)
    result = accounts(app_db.url, "set-tier", "Alice", "pro")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "alice: tier pro (2)\n"
    user = find_user("alice")
    assert user is not None and user.tier == 2


def test_create_user_then_list(app_db) -> None:
    created = accounts(
        app_db.url,
        "create-user",
        "bob",
        "--display-name",
        "Bob B.",
        "--tier",
        "max",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == "created bob (tier max)\n"
    assert PASSWORD not in created.stdout + created.stderr
    listed = accounts(app_db.url, "list")
    assert listed.returncode == 0
    assert listed.stdout == "bob\tmax\tBob B.\n"


def test_errors_are_one_line_with_status_1(app_db) -> None:
    register("carol", "Carol", PASSWORD)
    cases = {
        ("set-tier", "nobody", "pro"): "accounts: username: no user named 'nobody'",
        ("set-tier", "carol", "gold"): "accounts: tier: expected free, pro or max (or 1, 2, 3)",
    }
    for args, line in cases.items():
        result = accounts(app_db.url, *args)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [line]
    weak = accounts(app_db.url, "create-user", "dan", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1
    assert weak.stderr.splitlines() == ["accounts: Password must be at least 8 characters."]
    bad_tier = accounts(
        app_db.url, "create-user", "erin", "--tier", "gold", "--password-stdin", stdin=PASSWORD
    )
    assert bad_tier.returncode == 1
    assert find_user("erin") is None


def test_unmigrated_database_says_what_to_run(tmp_path: Path) -> None:
    result = accounts(f"sqlite:///{tmp_path / 'empty.db'}", "list")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "accounts: the database has no account tables; run: python -m behest_chat.db upgrade"
    ]


def test_bad_database_url_is_named(tmp_path: Path) -> None:
    result = accounts("mysql://app:db-secret@localhost/app", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("accounts: DATABASE_URL: ")
    assert "db-secret" not in result.stderr


def test_usage_errors_exit_with_2(tmp_path: Path) -> None:
    result = accounts(f"sqlite:///{tmp_path / 'x.db'}", "set-tier", "alice")
    assert result.returncode == 2
    assert "usage:" in result.stderr
