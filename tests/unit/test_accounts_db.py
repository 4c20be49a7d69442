"""The schema: migrations agree with the models, and `python -m behest_chat.db upgrade` works."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import behest_chat.tables  # noqa: F401  (registers every table)
from behest_chat import db

ROOT = Path(__file__).resolve().parents[2]


def run_db(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "behest_chat.db", *args],
        cwd=ROOT,
        env={**env, "DATABASE_URL": database_url, "APP_ENV_FILE": os.devnull},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrations_match_the_models(app_db) -> None:
    with db.engine_for(app_db.url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_sqlite_runs_with_wal_and_foreign_keys(app_db) -> None:
    with db.get_engine().connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_upgrade_command_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    for _ in range(2):
        result = run_db("upgrade", database_url=f"sqlite:///{path}")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "db: schema is up to date\n"
    with sqlite3.connect(path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"user", "auth_session", "login_attempt"} <= tables
    head = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
    assert version == head


def test_upgrade_command_names_a_bad_database_url(tmp_path: Path) -> None:
    result = run_db("upgrade", database_url="postgres://app:db-secret@localhost/app")
    assert result.returncode == 1
    assert result.stderr.startswith("db: DATABASE_URL: ")
    assert len(result.stderr.splitlines()) == 1
    assert "db-secret" not in result.stderr


def test_upgrade_command_reports_an_unusable_database_in_one_line(tmp_path: Path) -> None:
    result = run_db("upgrade", database_url=f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    assert result.returncode == 1
    assert result.stderr.startswith("db: migration failed: OperationalError")
    assert len(result.stderr.splitlines()) == 1


def test_usage(tmp_path: Path) -> None:
    result = run_db("migrate", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert result.stderr == "usage: python -m behest_chat.db upgrade\n"
