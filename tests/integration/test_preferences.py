"""The per-user transport preference in a migrated SQLite database."""

from __future__ import annotations

import sqlite3

import pytest

from behest_chat.accounts.service import register
from behest_chat.preferences import DEFAULT_TRANSPORT, get_transport, set_transport

PASSWORD = "correct horse battery"


def test_users_start_on_the_relay_and_keep_their_own_choice(app_db) -> None:
    alice = register("alice", "Alice", PASSWORD)
    bob = register("bob", "Bob", PASSWORD)
    assert get_transport(alice.user_id) == DEFAULT_TRANSPORT == "relay"
    assert set_transport(alice.user_id, "direct") == "direct"
    assert get_transport(alice.user_id) == "direct"
    assert get_transport(bob.user_id) == "relay"
    assert set_transport(alice.user_id, "relay") == "relay"
    assert get_transport(alice.user_id) == "relay"


def test_an_unknown_transport_is_refused_in_one_line(app_db) -> None:
    alice = register("alice", "Alice", PASSWORD)
    with pytest.raises(ValueError, match=r"^transport: expected 'relay' or 'direct', got 'x'$"):
        set_transport(alice.user_id, "x")
    assert get_transport(alice.user_id) == "relay"


def test_the_database_refuses_other_values_and_follows_the_user(app_db) -> None:
    alice = register("alice", "Alice", PASSWORD)
    set_transport(alice.user_id, "direct")
    with sqlite3.connect(app_db.path) as db:
        db.execute("PRAGMA foreign_keys=ON")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("UPDATE transport_preference SET transport = 'pigeon'")
        db.execute("DELETE FROM user WHERE id = ?", (alice.user_id,))
        (left,) = db.execute("SELECT COUNT(*) FROM transport_preference").fetchone()
    assert left == 0
