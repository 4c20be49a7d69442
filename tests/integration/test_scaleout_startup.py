"""Start-up in scale-out mode: PostgreSQL and Redis checked first, one clear line when not."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from behest_chat.redis_support import describe_redis_url, load_redis_prefix, load_redis_url
from behest_chat.settings import SettingsError
from tests.fixtures.app import free_port
from tests.fixtures.gateway import ROOT
from tests.fixtures.services import PgDatabase, RedisNamespace

KEY = "behest_sk_live_" + "b" * 32


def run_module(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` with only `env` (and PATH) set, as scripts/run calls it."""
    base = {"PATH": os.environ["PATH"], "APP_ENV_FILE": os.devnull}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env={**base, **env},
        capture_output=True, text=True, timeout=60,
    )


def test_services_that_answer_pass_with_one_line(
    pg_database: PgDatabase, redis_namespace: RedisNamespace
) -> None:
    done = run_module(
        ["behest_chat.preflight"], DATABASE_URL=pg_database.url, REDIS_URL=redis_namespace.url
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"preflight OK: PostgreSQL postgresql://127.0.0.1:5432/{pg_database.name}, "
        "Redis redis://127.0.0.1:6379/0\n"
    )


@pytest.mark.parametrize(
    ("variable", "url", "expected"),
    [
        (
            "REDIS_URL",
            "redis://:hunter2secret@127.0.0.1:{port}/3",
            "preflight: REDIS_URL: Redis at redis://127.0.0.1:{port}/3 is not reachable "
            "(connection refused); check that it runs and that REDIS_URL is right\n",
        ),
        (
            "DATABASE_URL",
            "postgresql+psycopg://app:hunter2secret@127.0.0.1:{port}/chat",
            "preflight: DATABASE_URL: PostgreSQL at postgresql://127.0.0.1:{port}/chat is not "
            "reachable (connection refused); check that it runs and that DATABASE_URL is right\n",
        ),
    ],
)
def test_unreachable_service_stops_start_up_with_one_line_and_no_password(
    variable: str, url: str, expected: str
) -> None:
    port = free_port()  # nothing listens there
    done = run_module(["behest_chat.preflight"], **{variable: url.format(port=port)})
    assert done.returncode == 1
    assert done.stderr == expected.format(port=port)
    assert "hunter2secret" not in done.stdout + done.stderr


def test_missing_database_is_named() -> None:
    done = run_module(
        ["behest_chat.preflight"],
        DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:5432/nope_{secrets.token_hex(4)}",
    )
    assert done.returncode == 1
    assert "(no such database or user)" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("env", "plan"),
    [
        ({}, "0 0 127.0.0.1 8787"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/4"}, "1 1 127.0.0.1 8787"),
        (
            {"REDIS_URL": "redis://127.0.0.1", "BEHEST_BASE_URL": "http://127.0.0.1:9",
             "BEHEST_GATEWAY_PORT": "9100"},
            "1 0 127.0.0.1 9100",
        ),
    ],
)
def test_plan_tells_the_run_script_what_to_start(env: dict[str, str], plan: str) -> None:
    done = run_module(["behest_chat.preflight", "plan"], BEHEST_KEY=KEY, **env)
    assert (done.returncode, done.stdout.strip()) == (0, plan), done.stderr


def test_run_script_exits_at_once_when_redis_is_down(tmp_path: Path) -> None:
    port = free_port()
    env_file = tmp_path / "app.env"
    env_file.write_text("# set by the test\n")
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("BEHEST_", "APP_", "DATABASE_URL", "REDIS_URL", "GRANIAN_"))
    }
    env.update(
        APP_ENV_FILE=str(env_file),
        BEHEST_KEY=KEY,
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        REDIS_URL=f"redis://:hunter2secret@127.0.0.1:{port}/0",
    )
    done = subprocess.run(
        [str(ROOT / "scripts" / "run")], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert (
        f"preflight: REDIS_URL: Redis at redis://127.0.0.1:{port}/0 is not reachable"
        in done.stderr
    )
    assert "hunter2secret" not in done.stdout + done.stderr
    assert "starting on" not in done.stdout, "nothing was started"


def test_redis_settings_name_the_variable_and_never_echo_the_url() -> None:
    assert load_redis_url(None, {}) is None
    assert load_redis_url(None, {"REDIS_URL": " redis://h:1/2 "}) == "redis://h:1/2"
    with pytest.raises(SettingsError, match=r"^REDIS_URL: expected") as exc_info:
        load_redis_url(None, {"REDIS_URL": "http://u:secretpw@h"})
    assert "secretpw" not in str(exc_info.value)
    assert load_redis_prefix(None, {}) == "behest_chat:"
    assert load_redis_prefix(None, {"APP_REDIS_PREFIX": "demo-2:"}) == "demo-2:"
    with pytest.raises(SettingsError, match=r"^APP_REDIS_PREFIX: "):
        load_redis_prefix(None, {"APP_REDIS_PREFIX": "bad prefix*"})
    assert describe_redis_url("rediss://user:pw@cache.example:6380/5") == (
        "rediss://cache.example:6380/5"
    )


def test_start_up_checks_and_migrates_in_one_process_and_prints_the_plan(
    tmp_path: Path, redis_namespace: RedisNamespace
) -> None:
    database = tmp_path / "app.db"
    done = run_module(
        ["behest_chat.startup"],
        BEHEST_KEY=KEY,
        APP_PORT="3456",
        BEHEST_GATEWAY_PORT="8799",
        DATABASE_URL=f"sqlite:///{database}",
        REDIS_URL=redis_namespace.url,
    )
    assert done.returncode == 0, done.stderr
    # The script reads stdout; the person starting the app reads stderr.
    assert done.stdout == "3456 1 1 127.0.0.1 8799\n"
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == [
        "settings OK", "preflight OK", "db"
    ]
    with sqlite3.connect(database) as migrated:
        assert migrated.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"BEHEST_KEY": "not-a-key"}, "settings: BEHEST_KEY: "),
        ({"REDIS_URL": "redis://127.0.0.1:{port}/0"}, "preflight: REDIS_URL: "),
    ],
)
def test_start_up_stops_at_the_first_failure_with_its_one_line(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    port = free_port()
    database = tmp_path / "app.db"
    given = {"BEHEST_KEY": KEY, "DATABASE_URL": f"sqlite:///{database}"}
    given.update({k: v.format(port=port) for k, v in env.items()})
    done = run_module(["behest_chat.startup"], **given)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") <= 2 and done.stderr.splitlines()[-1].startswith(line)
    assert not database.exists(), "nothing migrated after a failed check"
