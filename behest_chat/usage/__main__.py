"""Token usage administration from the shell.

Usage::

    python -m behest_chat.usage report --since 2026-11-01 [--until 2026-11-30]
    python -m behest_chat.usage report --since 2026-11-01 --user alice --csv
    python -m behest_chat.usage set-budget alice --daily 200000 --conversation-cap 20000
    python -m behest_chat.usage set-budget alice --daily default   # back to the tier's budget

``report`` prints per-user, per-session attribution (one Behest session per conversation),
with totals. ``set-budget`` overrides a user's limits (``0`` = no limit, ``default`` = the
settings' value). Reads the database named by ``DATABASE_URL``.
Exit status: 0 on success, 1 with one line on stderr on error, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from sqlalchemy.exc import OperationalError, ProgrammingError

from behest_chat.accounts.service import find_user
from behest_chat.conversations.budgets import set_user_budget
from behest_chat.settings import SettingsError
from behest_chat.usage.report import AttributionRow, attribution, attribution_csv

_COLUMNS = (
    ("user", 14),
    ("behest uid", 12),
    ("session", 37),
    ("conversation", 28),
    ("requests", 9),
    ("prompt", 10),
    ("completion", 11),
    ("total", 11),
)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (SettingsError, ValueError) as exc:
        return _fail(str(exc))
    except (OperationalError, ProgrammingError) as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return _fail("the database has no usage tables; run: python -m behest_chat.db upgrade")
        return _fail(f"database error: {str(exc).splitlines()[0]}")


def _report(args: argparse.Namespace) -> int:
    if args.until is not None and args.until < args.since:
        return _fail("--until: must not be before --since")
    rows = attribution(args.since, args.until, args.user)
    if args.csv:
        sys.stdout.write(attribution_csv(rows))
        return 0
    window = f"{args.since.isoformat()} to {args.until.isoformat() if args.until else 'today'}"
    print(f"Token usage per user and session, {window} (UTC days)")
    print(_line([name for name, _ in _COLUMNS]))
    for row in rows:
        print(_line(_cells(row)))
    totals = [sum(getattr(r, f) for r in rows) for f in ("requests", "prompt_tokens")]
    completion = sum(r.completion_tokens for r in rows)
    print(
        _line(
            [
                "total",
                "",
                "",
                f"{len({r.username for r in rows})} user(s)",
                *map(str, totals),
                str(completion),
                str(totals[1] + completion),
            ]
        )
    )
    estimated = sum(r.estimated_requests for r in rows)
    if estimated:
        print(f"{estimated} request(s) ended before their usage report; their tokens are counted.")
    return 0


def _set_budget(args: argparse.Namespace) -> int:
    user = find_user(args.username)
    if user is None:
        return _fail(f"username: no user named {args.username!r}")
    row = set_user_budget(
        user.user_id, daily_tokens=args.daily, conversation_cap=args.conversation_cap
    )
    if row is None:
        print(f"{user.username}: budgets from the settings")
    else:
        daily = "settings" if row.daily_tokens is None else f"{row.daily_tokens:,}"
        cap = "settings" if row.conversation_cap is None else f"{row.conversation_cap:,}"
        print(f"{user.username}: daily {daily}, per conversation {cap} (0 = no limit)")
    return 0


def _cells(row: AttributionRow) -> list[str]:
    return [
        row.username,
        row.behest_user_id,
        row.session_id,
        row.title,
        str(row.requests),
        str(row.prompt_tokens),
        str(row.completion_tokens),
        str(row.total_tokens),
    ]


def _line(cells: list[str]) -> str:
    parts = []
    for (_, width), cell in zip(_COLUMNS, cells, strict=True):
        text = cell if len(cell) <= width else cell[: width - 1] + "…"
        parts.append(text.ljust(width) if width > 11 else text.rjust(width))
    return " ".join(parts).rstrip()


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-01") from None


def _limit(text: str) -> int | None:
    if text == "default":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number or 'default'")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m behest_chat.usage", description="Token usage reports and budgets."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    report = commands.add_parser("report", help="per-user, per-session token attribution")
    report.add_argument("--since", type=_day, required=True, help="first UTC day, YYYY-MM-DD")
    report.add_argument("--until", type=_day, default=None, help="last UTC day (default today)")
    report.add_argument("--user", default=None, help="only this username")
    report.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    report.set_defaults(run=_report)

    budget = commands.add_parser("set-budget", help="override a user's token budgets")
    budget.add_argument("username")
    budget.add_argument(
        "--daily", type=_limit, default=None, help="tokens per UTC day, 0 = none, 'default'"
    )
    budget.add_argument(
        "--conversation-cap",
        type=_limit,
        default=None,
        help="tokens per conversation, 0 = none, 'default'",
    )
    budget.set_defaults(run=_set_budget)
    return parser


def _fail(message: str) -> int:
    print(f"behest_chat.usage: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
