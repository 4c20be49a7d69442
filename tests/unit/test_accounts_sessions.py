"""Sessions on a real migrated SQLite file: create, resolve, revoke, expire."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from behest_chat.accounts.models import utcnow
from behest_chat.accounts.service import register, set_tier
from behest_chat.accounts.sessions import (
    SESSION_COOKIE,
    SessionUser,
    create_session,
    resolve,
    revoke,
    revoke_all,
)

PASSWORD = "correct horse battery"


@pytest.fixture
def alice(app_db) -> SessionUser:
    return register("Alice", "Alice A.", PASSWORD)


def sql_time(moment: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite (UTC, no offset)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def rows(app_db, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(app_db.path) as conn:
        return conn.execute(sql, args).fetchall()


def test_cookie_name() -> None:
    assert SESSION_COOKIE == "behest_chat_session"


def test_a_new_session_resolves_to_its_user(alice: SessionUser) -> None:
    secret = create_session(alice)
    assert len(secret) == 43  # secrets.token_urlsafe(32)
    user = resolve(secret)
    assert user == SessionUser(
        user_id=alice.user_id, username="alice", display_name="Alice A.", tier=1
    )
    assert user.behest_user_id == f"user-{alice.user_id}"


def test_only_the_hash_of_the_secret_is_stored(app_db, alice: SessionUser) -> None:
    secret = create_session(alice)
    stored = rows(app_db, "SELECT secret_sha256 FROM auth_session")
    assert stored == [(hashlib.sha256(secret.encode()).hexdigest(),)]
    assert secret.encode() not in app_db.path.read_bytes()


def test_session_expiry_follows_the_ttl(app_db, alice: SessionUser) -> None:
    before = utcnow()
    create_session(alice, ttl=timedelta(hours=3))
    ((expires_at,),) = rows(app_db, "SELECT expires_at FROM auth_session")
    lifetime = (datetime.fromisoformat(expires_at).replace(tzinfo=UTC) - before).total_seconds()
    assert 3 * 3600 - 5 < lifetime < 3 * 3600 + 5


def test_revoked_session_no_longer_resolves(alice: SessionUser) -> None:
    secret = create_session(alice)
    other = create_session(alice)
    assert revoke(secret) is True
    assert resolve(secret) is None
    assert revoke(secret) is False
    assert resolve(other) is not None


def test_expired_session_no_longer_resolves(app_db, alice: SessionUser) -> None:
    secret = create_session(alice)
    with sqlite3.connect(app_db.path) as conn:
        conn.execute(
            "UPDATE auth_session SET expires_at = ?", (sql_time(utcnow() - timedelta(seconds=1)),)
        )
    assert resolve(secret) is None


@pytest.mark.parametrize(
    "secret",
    [None, "", "short", "x" * 43 + "!", "a" * 129, "not a session secret at all, nope!!"],
)
def test_malformed_secrets_resolve_to_nobody(alice: SessionUser, secret: str | None) -> None:
    create_session(alice)
    assert resolve(secret) is None
    assert revoke(secret) is False


def test_unknown_secret_resolves_to_nobody(alice: SessionUser) -> None:
    create_session(alice)
    assert resolve("A" * 43) is None


def test_tier_changes_show_on_the_next_resolve(alice: SessionUser) -> None:
    secret = create_session(alice)
    set_tier("alice", "max")
    user = resolve(secret)
    assert user is not None and user.tier == 3


def test_revoke_all_ends_every_session_of_the_user(app_db, alice: SessionUser) -> None:
    bob = register("bob", "Bob", PASSWORD)
    secrets_ = [create_session(alice) for _ in range(3)]
    bobs = create_session(bob)
    assert revoke_all(alice.user_id) == 3
    assert all(resolve(s) is None for s in secrets_)
    assert resolve(bobs) is not None


def test_last_seen_is_refreshed_but_not_on_every_call(app_db, alice: SessionUser) -> None:
    secret = create_session(alice)
    long_ago = sql_time(utcnow() - timedelta(hours=1))
    with sqlite3.connect(app_db.path) as conn:
        conn.execute("UPDATE auth_session SET last_seen_at = ?", (long_ago,))
    resolve(secret)
    ((first,),) = rows(app_db, "SELECT last_seen_at FROM auth_session")
    assert first > long_ago
    resolve(secret)
    ((second,),) = rows(app_db, "SELECT last_seen_at FROM auth_session")
    assert second == first


def test_deleting_a_user_deletes_their_sessions(app_db, alice: SessionUser) -> None:
    create_session(alice)
    from behest_chat.accounts.models import User
    from behest_chat.db import session_scope

    with session_scope() as db:
        db.delete(db.get(User, alice.user_id))
    assert rows(app_db, "SELECT COUNT(*) FROM auth_session") == [(0,)]


def test_finished_sessions_are_cleaned_up_at_the_next_sign_in(app_db, alice: SessionUser) -> None:
    old = create_session(alice)
    with sqlite3.connect(app_db.path) as conn:
        conn.execute(
            "UPDATE auth_session SET expires_at = ?", (sql_time(utcnow() - timedelta(days=2)),)
        )
    create_session(alice)
    assert rows(app_db, "SELECT COUNT(*) FROM auth_session") == [(1,)]
    assert resolve(old) is None
