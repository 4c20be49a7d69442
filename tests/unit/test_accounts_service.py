"""Registration, sign-in, throttling and tiers on a real migrated SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, timedelta

import pytest

from behest_chat.accounts.models import utcnow
from behest_chat.accounts.service import (
    WRONG_CREDENTIALS,
    AccountError,
    LoginFailedError,
    RegistrationError,
    TooManyAttemptsError,
    UnknownUserError,
    authenticate,
    find_user,
    list_users,
    parse_tier,
    register,
    set_tier,
)

PASSWORD = "correct horse battery"


def test_register_lowercases_and_defaults_the_display_name(app_db) -> None:
    user = register("  Alice.B-2_ ", "", PASSWORD)
    assert user.username == "alice.b-2_"
    assert user.display_name == "alice.b-2_"
    assert user.tier == 1
    assert find_user("ALICE.B-2_") == user


def test_register_keeps_a_tidied_display_name(app_db) -> None:
    assert register("bob", "  Bob   the\tBuilder ", PASSWORD).display_name == "Bob the Builder"


def test_password_hash_is_stored_not_the_password(app_db) -> None:
    register("carol", "Carol", PASSWORD)
    with sqlite3.connect(app_db.path) as conn:
        ((stored,),) = conn.execute("SELECT password_hash FROM user").fetchall()
    assert stored.startswith("scrypt$") and PASSWORD not in stored


@pytest.mark.parametrize(
    ("username", "display_name", "password", "field", "message"),
    [
        ("al", "", PASSWORD, "username", "Username must be 3 to 32 characters"),
        ("a" * 33, "", PASSWORD, "username", "Username must be 3 to 32 characters"),
        ("al ice", "", PASSWORD, "username", "Username must be 3 to 32 characters"),
        ("alice!", "", PASSWORD, "username", "Username must be 3 to 32 characters"),
        ("ålice", "", PASSWORD, "username", "Username must be 3 to 32 characters"),
        ("alice", "x" * 65, PASSWORD, "display_name", "at most 64 characters"),
        ("alice", "Al\x00ice", PASSWORD, "display_name", "control characters"),
        ("alice", "Alice", "short", "password", "at least 8 characters"),
        ("alice", "Alice", "p" * 257, "password", "at most 256 characters"),
        ("alice", "Alice", "ALICE", "password", "at least 8 characters"),
        ("alice123", "Alice", "Alice123", "password", "must not be the username"),
    ],
)
def test_register_refuses_bad_fields(
    app_db, username: str, display_name: str, password: str, field: str, message: str
) -> None:
    with pytest.raises(RegistrationError) as caught:
        register(username, display_name, password)
    assert caught.value.field == field
    assert message in str(caught.value)
    assert password not in str(caught.value)
    assert list_users() == []


def test_register_refuses_a_taken_username_whatever_its_case(app_db) -> None:
    register("dave", "Dave", PASSWORD)
    with pytest.raises(RegistrationError, match=r"That username is taken.") as caught:
        register("DAVE", "Other Dave", PASSWORD)
    assert caught.value.field == "username"
    assert [u.display_name for u in list_users()] == ["Dave"]


def test_authenticate_accepts_the_right_password(app_db) -> None:
    created = register("erin", "Erin", PASSWORD)
    assert authenticate(" Erin ", PASSWORD, "10.0.0.1") == created


def test_wrong_password_and_unknown_user_look_the_same(app_db) -> None:
    register("frank", "Frank", PASSWORD)
    errors = []
    for username in ("frank", "nobody-here", "x"):
        with pytest.raises(LoginFailedError) as caught:
            authenticate(username, "wrong password", "10.0.0.2")
        errors.append((type(caught.value), str(caught.value), caught.value.field))
    assert errors == [(LoginFailedError, WRONG_CREDENTIALS, None)] * 3


def fail(username: str, ip: str | None, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(LoginFailedError):
            authenticate(username, "wrong password", ip)


def test_five_failures_lock_the_account_from_any_address(app_db) -> None:
    register("gina", "Gina", PASSWORD)
    for n in range(5):
        fail("gina", f"10.1.0.{n}")
    for ip in ("10.1.0.9", "192.168.7.7", None):
        with pytest.raises(TooManyAttemptsError) as caught:
            authenticate("gina", PASSWORD, ip)
        assert str(caught.value) == "Too many attempts. Try again in 15 minutes."
        assert 14 * 60 < caught.value.retry_after <= 15 * 60
    register("hank", "Hank", PASSWORD)
    assert authenticate("hank", PASSWORD, "10.1.0.9").username == "hank"


def test_unknown_usernames_are_throttled_the_same_way(app_db) -> None:
    register("ivan", "Ivan", PASSWORD)
    answers = []
    for username in ("ivan", "no-such-user"):
        fail(username, None, times=5)
        with pytest.raises(TooManyAttemptsError) as caught:
            authenticate(username, "wrong password", None)
        answers.append(str(caught.value))
    assert answers[0] == answers[1]


def test_five_failures_lock_the_client_address_for_every_account(app_db) -> None:
    register("jane", "Jane", PASSWORD)
    for n in range(5):
        fail(f"guess{n}", "10.2.0.1")
    with pytest.raises(TooManyAttemptsError):
        authenticate("jane", PASSWORD, "10.2.0.1")
    assert authenticate("jane", PASSWORD, "10.2.0.2").username == "jane"


def test_the_lock_lifts_when_failures_leave_the_window(app_db) -> None:
    register("kate", "Kate", PASSWORD)
    fail("kate", None, times=5)
    with sqlite3.connect(app_db.path) as conn:
        old = (utcnow() - timedelta(minutes=10)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute("UPDATE login_attempt SET failed_at = ?", (old,))
    with pytest.raises(TooManyAttemptsError, match=r"Try again in 5 minutes."):
        authenticate("kate", PASSWORD, None)
    with sqlite3.connect(app_db.path) as conn:
        old = (utcnow() - timedelta(minutes=16)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute("UPDATE login_attempt SET failed_at = ?", (old,))
    assert authenticate("kate", PASSWORD, None).username == "kate"


def test_one_address_may_create_per_hour_accounts_then_waits(app_db) -> None:
    register("nia", "Nia", PASSWORD, client_ip="10.0.0.7", per_hour=2)
    register("noor", "Noor", PASSWORD, client_ip="10.0.0.7", per_hour=2)
    with pytest.raises(TooManyAttemptsError, match=r"Try again in 60 minutes.") as refused:
        register("nils", "Nils", PASSWORD, client_ip="10.0.0.7", per_hour=2)
    assert 3500 < refused.value.retry_after <= 3600
    assert find_user("nils") is None
    # Another address, and the admin tools (no address), are not limited by it.
    assert register("nils", "Nils", PASSWORD, client_ip="10.0.0.8", per_hour=2).username == "nils"
    assert register("nora", "Nora", PASSWORD).username == "nora"
    # A bad field is still named first, throttled or not.
    with pytest.raises(RegistrationError, match="Username"):
        register("x", "X", PASSWORD, client_ip="10.0.0.7", per_hour=2)


def test_the_sign_up_limit_lifts_when_the_hour_has_passed(app_db) -> None:
    register("olga", "Olga", PASSWORD, client_ip="10.0.0.9", per_hour=1)
    with sqlite3.connect(app_db.path) as conn:
        old = (utcnow() - timedelta(minutes=50)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute("UPDATE registration SET created_at = ?", (old,))
    with pytest.raises(TooManyAttemptsError, match=r"Try again in 10 minutes."):
        register("omar", "Omar", PASSWORD, client_ip="10.0.0.9", per_hour=1)
    with sqlite3.connect(app_db.path) as conn:
        old = (utcnow() - timedelta(minutes=61)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute("UPDATE registration SET created_at = ?", (old,))
    assert register("omar", "Omar", PASSWORD, client_ip="10.0.0.9", per_hour=1).username == "omar"
    with sqlite3.connect(app_db.path) as conn:  # rows that left the window are dropped
        assert conn.execute("SELECT count(*) FROM registration").fetchone() == (1,)


def test_success_clears_the_account_failures(app_db) -> None:
    register("liam", "Liam", PASSWORD)
    fail("liam", None, times=4)
    authenticate("liam", PASSWORD, None)
    fail("liam", None, times=4)
    assert authenticate("liam", PASSWORD, None).username == "liam"


def test_throttled_attempts_are_not_counted_again(app_db) -> None:
    fail("mona", None, times=5)
    for _ in range(3):
        with pytest.raises(TooManyAttemptsError):
            authenticate("mona", "wrong password", None)
    with sqlite3.connect(app_db.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM login_attempt").fetchone() == (5,)


@pytest.mark.parametrize(
    ("value", "tier"), [("free", 1), ("PRO", 2), (" max ", 3), ("1", 1), (2, 2), ("3", 3)]
)
def test_parse_tier(value: str | int, tier: int) -> None:
    assert parse_tier(value) == tier


@pytest.mark.parametrize("value", ["gold", "0", "4", "", "-1", 7])
def test_parse_tier_refuses_unknown_tiers(value: str | int) -> None:
    with pytest.raises(AccountError, match=r"^tier: expected free, pro or max"):
        parse_tier(value)


def test_set_tier_changes_the_stored_tier(app_db) -> None:
    register("nina", "Nina", PASSWORD)
    assert set_tier("NINA", "pro").tier == 2
    assert authenticate("nina", PASSWORD, None).tier == 2


def test_set_tier_for_an_unknown_user(app_db) -> None:
    with pytest.raises(UnknownUserError, match=r"^username: no user named 'olga'$"):
        set_tier("olga", "pro")


def test_the_database_refuses_an_out_of_range_tier(app_db) -> None:
    register("pete", "Pete", PASSWORD)
    with sqlite3.connect(app_db.path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE user SET tier = 9")
