"""What ``scripts/run`` checks and prepares before it starts the app, in one process.

``python -m behest_chat.startup`` runs, in order, stopping at the first that fails (its one
line on stderr, exit status 1):

1. the settings check (``python -m behest_chat.settings check``);
2. the service checks (``python -m behest_chat.preflight``);
3. the migrations (``python -m behest_chat.db upgrade``).

Each step's line goes to stderr as it passes, for the person starting the app. Stdout gets
one line for the script: ``<app port> <scale_out> <own_gateway> <gateway host> <gateway
port>`` (see ``python -m behest_chat.preflight plan``). One process instead of five saves
four interpreter starts and imports: seconds at every start on a small machine.
"""

from __future__ import annotations

import contextlib
import io
import sys

from behest_chat import db, preflight, settings

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Check, migrate, print the plan; see the module docstring. Returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python -m behest_chat.startup", file=sys.stderr)
        return 2
    checks = (
        lambda: settings.main(["check"]),
        lambda: preflight.main([]),
        lambda: db.main(["upgrade"]),
    )
    with contextlib.redirect_stdout(sys.stderr):
        for check in checks:
            if (status := check()) != 0:
                return status
    plan = io.StringIO()
    with contextlib.redirect_stdout(plan):
        for part in (lambda: settings.main(["app-port"]), lambda: preflight.main(["plan"])):
            if (status := part()) != 0:
                return status
    print(" ".join(plan.getvalue().split()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
