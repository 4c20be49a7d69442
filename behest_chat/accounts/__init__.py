"""Server-side identity: users, password hashing, sessions, sign-in throttling, admin CLI.

Admin: ``python -m behest_chat.accounts set-tier alice pro`` (see ``__main__``).
"""

from behest_chat.accounts.models import TIERS, AuthSession, LoginAttempt, User
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
from behest_chat.accounts.sessions import (
    SESSION_COOKIE,
    SessionUser,
    create_session,
    resolve,
    revoke,
    revoke_all,
)

__all__ = [
    "SESSION_COOKIE",
    "TIERS",
    "WRONG_CREDENTIALS",
    "AccountError",
    "AuthSession",
    "LoginAttempt",
    "LoginFailedError",
    "RegistrationError",
    "SessionUser",
    "TooManyAttemptsError",
    "UnknownUserError",
    "User",
    "authenticate",
    "create_session",
    "find_user",
    "list_users",
    "parse_tier",
    "register",
    "resolve",
    "revoke",
    "revoke_all",
    "set_tier",
]
