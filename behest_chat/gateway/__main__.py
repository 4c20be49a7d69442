"""``python -m behest_chat.gateway [--host 127.0.0.1] [--port 8787] [--env-file .env]``.

Reads the same ``.env`` as the app (the environment wins), prints one line
``behest-gateway listening on http://HOST:PORT …`` to stdout once it accepts connections
(``--port 0`` picks a free port and shows it there), then logs one line per request to
stderr. A bad setting exits with status 2 and one line naming the variable; a busy port
exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from behest_chat.gateway.app import create_app
from behest_chat.gateway.config import GatewayConfig, load_environ
from behest_chat.gateway.embedded import (
    GatewayServer,
    GatewayStartError,
    base_url_for,
    bind_socket,
    uvicorn_config,
)
from behest_chat.gateway.faults import install_log_filter


def main(argv: list[str] | None = None) -> int:
    """Run the gateway until interrupted.

    Args:
        argv: command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m behest_chat.gateway", description="Local Behest-compatible gateway."
    )
    parser.add_argument("--host", help="listen address (default BEHEST_GATEWAY_HOST or 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        help="listen port, 0 = any free port (default BEHEST_GATEWAY_PORT or 8787)",
    )
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    args = parser.parse_args(argv)

    try:
        config = GatewayConfig.from_env(load_environ(args.env_file))
    except ValueError as exc:
        print(f"behest-gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The gateway logs its own line per request; httpx's per-call lines would only repeat them.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    try:
        sock = bind_socket(host, port)
    except GatewayStartError as exc:
        print(f"behest-gateway: {exc}", file=sys.stderr)
        return 1
    app = create_app(config)
    model = f"upstream {config.upstream.model}" if config.upstream else "offline model"
    summary = (
        f"behest-gateway listening on {base_url_for(sock)} ({model}; "
        f"{len(config.projects)} project(s); faults {'on' if config.faults_enabled else 'off'})"
    )
    server = GatewayServer(
        uvicorn_config(app), handle_signals=True, on_started=lambda: print(summary, flush=True)
    )
    install_log_filter()
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
