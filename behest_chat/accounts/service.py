"""Registration, sign-in with throttling, and tier changes.

Sign-in never tells whether a username exists: a wrong password and an unknown user give
the same :data:`WRONG_CREDENTIALS` message after the same amount of hashing work, and the
throttle counts failures per *attempted* username (existing or not) and per client IP.
After :data:`THROTTLE_LIMIT` failures within :data:`THROTTLE_WINDOW` for either, further
attempts are refused until the oldest of those failures leaves the window.

Registration can be limited per client address (``per_hour`` accounts within
:data:`REGISTRATION_WINDOW`), checked before the password is hashed, so that a script cannot
fill the database or keep the server busy hashing.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from behest_chat.accounts.models import TIERS, LoginAttempt, Registration, User, utcnow
from behest_chat.accounts.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    hash_password,
    verify_password,
)
from behest_chat.accounts.sessions import SessionUser
from behest_chat.db import session_scope

__all__ = [
    "REGISTRATION_WINDOW",
    "THROTTLE_LIMIT",
    "THROTTLE_WINDOW",
    "WRONG_CREDENTIALS",
    "AccountError",
    "LoginFailedError",
    "RegistrationError",
    "TooManyAttemptsError",
    "UnknownUserError",
    "authenticate",
    "find_user",
    "list_users",
    "normalize_username",
    "parse_tier",
    "register",
    "set_tier",
]

THROTTLE_LIMIT = 5
THROTTLE_WINDOW = timedelta(minutes=15)
REGISTRATION_WINDOW = timedelta(hours=1)
WRONG_CREDENTIALS = "Wrong username or password."
_USERNAME_RE = re.compile(r"[a-z0-9_.-]{3,32}")
_DISPLAY_NAME_MAX = 64
_SUBJECT_MAX = 160


class AccountError(ValueError):
    """A request the accounts service refuses; ``str()`` is a message fit for the user.

    Attributes:
        field: the form field at fault, when there is one.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RegistrationError(AccountError):
    """A registration field is invalid, or the username is taken."""


class LoginFailedError(AccountError):
    """Wrong username or password (deliberately not saying which)."""

    def __init__(self) -> None:
        super().__init__(WRONG_CREDENTIALS)


class TooManyAttemptsError(AccountError):
    """Sign-in (or registration) is throttled for this username or client.

    Attributes:
        retry_after: seconds until an attempt will be considered again.
    """

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, math.ceil(retry_after / 60))
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(f"Too many attempts. Try again in {minutes} {unit}.")
        self.retry_after = retry_after


class UnknownUserError(AccountError):
    """No user has this username (admin commands only; sign-in never says so)."""


def normalize_username(username: str) -> str:
    """The stored form of a username: trimmed and lowercased."""
    return (username or "").strip().lower()


def parse_tier(value: int | str) -> int:
    """A tier id from ``1``/``2``/``3`` or ``free``/``pro``/``max``.

    Raises:
        AccountError: anything else.
    """
    text = str(value).strip().lower()
    if text in TIERS:
        return TIERS[text]
    if text in {"1", "2", "3"}:
        return int(text)
    raise AccountError("tier: expected free, pro or max (or 1, 2, 3)", field="tier")


def register(
    username: str,
    display_name: str,
    password: str,
    *,
    client_ip: str | None = None,
    per_hour: int = 0,
) -> SessionUser:
    """Create a user with tier 1 (free).

    Args:
        username: 3 to 32 of ``a-z 0-9 _ . -`` (upper case is lowered).
        display_name: up to 64 printable characters; empty means the username.
        password: at least 8 characters.
        client_ip: the client's address, for the limit; ``None`` if unknown (no limit).
        per_hour: accounts one address may create per hour; 0 = no limit.

    Returns:
        The new user.

    Raises:
        RegistrationError: with a message naming the problem and ``field`` set.
        TooManyAttemptsError: this address created ``per_hour`` accounts in the last hour.
    """
    name = normalize_username(username)
    if not _USERNAME_RE.fullmatch(name):
        raise RegistrationError(
            "Username must be 3 to 32 characters: letters, digits, '_', '.' or '-'.",
            field="username",
        )
    shown = _clean_display_name(display_name) or name
    _check_new_password(password, name)
    client = f"ip:{client_ip}"[:_SUBJECT_MAX] if client_ip and per_hour > 0 else None
    now = utcnow()
    if client is not None:
        with session_scope() as db:
            wait = _seconds_until_registration(db, client, now, per_hour)
        if wait > 0:
            raise TooManyAttemptsError(wait)
    user = User(username=name, display_name=shown, password_hash=hash_password(password))
    try:
        with session_scope() as db:
            db.add(user)
            if client is not None:
                db.exec(
                    delete(Registration).where(
                        col(Registration.created_at) < now - REGISTRATION_WINDOW
                    )
                )
                db.add(Registration(client=client, created_at=now))
            db.flush()
            return SessionUser.from_row(user)
    except IntegrityError:
        raise RegistrationError("That username is taken.", field="username") from None


def authenticate(username: str, password: str, client_ip: str | None) -> SessionUser:
    """Check a username and password, with throttling.

    Args:
        username: as typed (case and surrounding spaces do not matter).
        password: as typed.
        client_ip: the client's address, throttled separately; ``None`` if unknown.

    Returns:
        The signed-in user.

    Raises:
        TooManyAttemptsError: too many recent failures for this username or client.
        LoginFailedError: the username or the password is wrong (never says which).
    """
    name = normalize_username(username)
    subjects = [f"user:{name}"[:_SUBJECT_MAX]]
    if client_ip:
        subjects.append(f"ip:{client_ip}"[:_SUBJECT_MAX])
    now = utcnow()
    with session_scope() as db:
        wait = max(_seconds_locked(db, subject, now) for subject in subjects)
        if wait > 0:
            raise TooManyAttemptsError(wait)
        user = _user_by_name(db, name) if _USERNAME_RE.fullmatch(name) else None
    # Unknown users are checked against a dummy hash: the same work, the same answer.
    if not verify_password(password or "", user.password_hash if user else None) or user is None:
        with session_scope() as db:
            db.exec(delete(LoginAttempt).where(col(LoginAttempt.failed_at) < now - THROTTLE_WINDOW))
            db.add_all(LoginAttempt(subject=subject, failed_at=now) for subject in subjects)
        raise LoginFailedError()
    with session_scope() as db:
        db.exec(delete(LoginAttempt).where(col(LoginAttempt.subject) == subjects[0]))
    return SessionUser.from_row(user)


def set_tier(username: str, tier: int | str) -> SessionUser:
    """Change a user's Behest tier; the next minted token carries it.

    Raises:
        AccountError: bad tier.
        UnknownUserError: no such user.
    """
    tier_id = parse_tier(tier)
    name = normalize_username(username)
    with session_scope() as db:
        user = _user_by_name(db, name)
        if user is None:
            raise UnknownUserError(f"username: no user named {name!r}", field="username")
        user.tier = tier_id
        db.add(user)
        db.flush()
        return SessionUser.from_row(user)


def find_user(username: str) -> SessionUser | None:
    """The user with this username, or ``None`` (admin tools only)."""
    with session_scope() as db:
        user = _user_by_name(db, normalize_username(username))
        return SessionUser.from_row(user) if user else None


def list_users() -> list[SessionUser]:
    """Every user, by username."""
    with session_scope() as db:
        return [SessionUser.from_row(u) for u in db.exec(select(User).order_by(User.username))]


def _user_by_name(db: Session, name: str) -> User | None:
    return db.exec(select(User).where(User.username == name)).first()


def _seconds_locked(db: Session, subject: str, now: datetime) -> int:
    """Seconds until ``subject`` may try again; 0 when it may now."""
    recent = db.exec(
        select(LoginAttempt.failed_at)
        .where(LoginAttempt.subject == subject, LoginAttempt.failed_at > now - THROTTLE_WINDOW)
        .order_by(col(LoginAttempt.failed_at).desc())
        .limit(THROTTLE_LIMIT)
    ).all()
    return _seconds_to_wait(recent, THROTTLE_LIMIT, THROTTLE_WINDOW, now)


def _seconds_until_registration(db: Session, client: str, now: datetime, per_hour: int) -> int:
    """Seconds until ``client`` may create another account; 0 when it may now."""
    recent = db.exec(
        select(Registration.created_at)
        .where(Registration.client == client, Registration.created_at > now - REGISTRATION_WINDOW)
        .order_by(col(Registration.created_at).desc())
        .limit(per_hour)
    ).all()
    return _seconds_to_wait(recent, per_hour, REGISTRATION_WINDOW, now)


def _seconds_to_wait(
    newest_first: list[datetime], limit: int, window: timedelta, now: datetime
) -> int:
    """Given the last ``limit`` events in ``window``, newest first: seconds until one more is
    allowed (0 = now), i.e. until the oldest of them leaves the window."""
    if len(newest_first) < limit:
        return 0
    return max(1, math.ceil((newest_first[-1] + window - now).total_seconds()))


def _clean_display_name(display_name: str) -> str:
    shown = " ".join((display_name or "").split())
    if len(shown) > _DISPLAY_NAME_MAX:
        raise RegistrationError(
            f"Display name must be at most {_DISPLAY_NAME_MAX} characters.", field="display_name"
        )
    if any(unicodedata.category(ch).startswith("C") for ch in shown):
        raise RegistrationError(
            "Display name must not contain control characters.", field="display_name"
        )
    return shown


def _check_new_password(password: str, username: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise RegistrationError(
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters.", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise RegistrationError(
            f"Password must be at most {MAX_PASSWORD_LENGTH} characters.", field="password"
        )
    if password.strip().lower() == username:
        raise RegistrationError("Password must not be the username.", field="password")
