"""Account administration from the shell.

Usage::

    python -m behest_chat.accounts set-tier alice pro       # free | pro | max | 1 | 2 | 3
    python -m behest_chat.accounts create-user alice --display-name "Alice" --tier pro
    python -m behest_chat.accounts list

``create-user`` asks for the password (or reads one line from stdin with
``--password-stdin``), so it never appears in the shell history or the process list.
Exit status: 0 on success, 1 with one line on stderr on error, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlalchemy.exc import OperationalError, ProgrammingError

from behest_chat.accounts.models import TIER_NAMES
from behest_chat.accounts.service import (
    AccountError,
    list_users,
    parse_tier,
    register,
    set_tier,
)
from behest_chat.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    """Run one admin command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (AccountError, SettingsError) as exc:
        return _fail(str(exc))
    except (OperationalError, ProgrammingError) as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return _fail(
                "the database has no account tables; run: python -m behest_chat.db upgrade"
            )
        return _fail(f"database error: {str(exc).splitlines()[0]}")


def _set_tier(args: argparse.Namespace) -> int:
    user = set_tier(args.username, args.tier)
    print(f"{user.username}: tier {TIER_NAMES[user.tier]} ({user.tier})")
    return 0


def _create_user(args: argparse.Namespace) -> int:
    tier = parse_tier(args.tier) if args.tier is not None else None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            return _fail("password: the two entries differ")
    user = register(args.username, args.display_name or "", password)
    if tier is not None:
        user = set_tier(user.username, tier)
    print(f"created {user.username} (tier {TIER_NAMES[user.tier]})")
    return 0


def _list(_args: argparse.Namespace) -> int:
    for user in list_users():
        print(f"{user.username}\t{TIER_NAMES[user.tier]}\t{user.display_name}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m behest_chat.accounts", description="Manage behest-chat accounts."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    tier = commands.add_parser("set-tier", help="change a user's Behest tier")
    tier.add_argument("username")
    tier.add_argument("tier", help="free, pro or max (or 1, 2, 3)")
    tier.set_defaults(run=_set_tier)

    create = commands.add_parser("create-user", help="create a user (for demos)")
    create.add_argument("username")
    create.add_argument("--display-name", default="")
    create.add_argument("--tier", default=None, help="free, pro or max (default free)")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    create.set_defaults(run=_create_user)

    listing = commands.add_parser("list", help="list users and their tiers")
    listing.set_defaults(run=_list)
    return parser


def _fail(message: str) -> int:
    print(f"accounts: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
