"""Ask Behest one question from the command line, server to server, streaming the answer.

Usage::

    python -m behest_chat.ask --user alice [--tier free] [--session ID] [--thread ID] "question"

Configuration comes from the app's settings (``.env`` plus the environment; see
``behest_chat.settings``). With ``BEHEST_BASE_URL`` unset, the local gateway is started
inside this process for the duration of the call, exactly as the app does.

The answer goes to stdout as it streams. On failure, one line goes to stderr and the exit
status is 1 (2 for bad configuration or arguments, 130 when interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any, TextIO

from behest_chat.behest import BehestClient, errors

__all__ = ["ask", "main"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m behest_chat.ask",
        description="Stream one answer from Behest for an end user (server-to-server).",
    )
    parser.add_argument("--user", required=True, help="end-user id the token is minted for")
    parser.add_argument(
        "--tier", default="free", help="tier: free, pro, max or 1, 2, 3 (default: free)"
    )
    parser.add_argument("--session", default=None, help="X-Session-Id (default: a new UUID)")
    parser.add_argument("--thread", default=None, help="X-Thread-Id for a persistent thread")
    parser.add_argument("--max-tokens", type=int, default=None, help="cap on answer tokens")
    parser.add_argument("question", nargs="+", help="the question (words are joined)")
    return parser


async def ask(
    client: BehestClient,
    *,
    user_id: str,
    question: str,
    tier: str | int | None = "free",
    session_id: str | None = None,
    thread_id: str | None = None,
    max_tokens: int | None = None,
    out: TextIO = sys.stdout,
) -> str:
    """Stream the answer to ``question`` for ``user_id`` into ``out``; return it whole.

    Raises:
        errors.BehestError: any failure, already typed.
    """
    extras = {} if max_tokens is None else {"max_tokens": max_tokens}
    stream = await client.chat.completions.create(
        messages=[{"role": "user", "content": question}],
        stream=True,
        user_id=user_id,
        tier=tier,
        session_id=session_id,
        thread_id=thread_id,
        **extras,
    )
    parts: list[str] = []
    async with stream:
        async for chunk in stream:
            choices = chunk.get("choices") or []
            delta = (choices[0].get("delta") or {}) if choices else {}
            content = delta.get("content")
            if content:
                parts.append(content)
                out.write(content)
                out.flush()
    out.write("\n")
    out.flush()
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


async def _run(args: argparse.Namespace) -> int:
    try:
        async with _client_kwargs() as client_kwargs, BehestClient(**client_kwargs) as client:
            await ask(
                client,
                user_id=args.user,
                question=" ".join(args.question),
                tier=args.tier,
                session_id=args.session,
                thread_id=args.thread,
                max_tokens=args.max_tokens,
            )
    except errors.BehestError as exc:
        if isinstance(exc, errors.BehestConfigError | errors.InvalidArgumentError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"error: {describe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except _StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def describe(exc: errors.BehestError) -> str:
    """One line for a failed call: kind, status, message, retry hint and trace id."""
    parts = [exc.kind]
    if exc.status is not None:
        parts.append(f"(HTTP {exc.status})")
    line = " ".join(parts) + f": {exc.message}"
    if isinstance(exc, errors.QuotaExceededError) and exc.tier is not None:
        line += f" [tier {exc.tier}]"
    if exc.retry_after is not None:
        line += f"; retry after {exc.retry_after} s"
    if exc.trace_id:
        line += f" [trace {exc.trace_id}]"
    return line


class _StartupError(Exception):
    """Bad settings, or the embedded gateway could not start (one line)."""


@contextlib.asynccontextmanager
async def _client_kwargs() -> AsyncIterator[dict[str, Any]]:
    """Yield the client's keyword arguments, read from the settings.

    With ``BEHEST_BASE_URL`` unset, the embedded gateway runs for the duration of the block.
    """
    from behest_chat.settings import env_file_path, load_settings

    try:
        settings = load_settings(env_file_path())
    except ValueError as exc:
        raise _StartupError(str(exc)) from None
    kwargs = settings.client_kwargs()
    if not settings.uses_embedded_gateway:
        yield kwargs
        return
    # Imported only here: a remote setup never loads the gateway's server stack.
    from behest_chat.gateway.config import GatewayConfig, load_environ
    from behest_chat.gateway.embedded import GatewayStartError, serve

    try:
        config = GatewayConfig.from_env(load_environ(env_file_path()))
    except ValueError as exc:
        raise _StartupError(str(exc)) from None
    try:
        # Port 0: this gateway is private to the command, so it never collides with the app's.
        async with serve(config, host=settings.gateway_host, port=0) as gateway:
            yield {**kwargs, "base_url": gateway.base_url}
    except GatewayStartError as exc:
        raise _StartupError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
