"""Run the gateway inside an existing event loop (the app's embedded default).

Usage from the app's lifespan::

    async with serve(GatewayConfig.from_env(environ)) as gateway:
        client = BehestClient(key=..., base_url=gateway.base_url)
        yield

The socket is bound before uvicorn starts, so a busy port fails at once with one line naming
``BEHEST_GATEWAY_PORT`` instead of uvicorn's ``sys.exit``. Signal handlers are left to the
host process; stopping is explicit (leaving the ``async with`` block, or ``stop()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator, Callable, Generator

import uvicorn
from starlette.applications import Starlette

from behest_chat.gateway.app import create_app
from behest_chat.gateway.config import GatewayConfig
from behest_chat.gateway.faults import install_log_filter

__all__ = ["EmbeddedGateway", "GatewayServer", "GatewayStartError", "bind_socket", "serve"]

_STOP_TIMEOUT_SECONDS = 5.0


class GatewayStartError(RuntimeError):
    """The gateway could not start listening (one line, names the setting)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening-ready TCP socket.

    Args:
        host: address or name to bind.
        port: port; 0 picks a free one.

    Returns:
        The bound socket (uvicorn starts listening on it).

    Raises:
        GatewayStartError: the port is taken or the address unusable.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise GatewayStartError(f"BEHEST_GATEWAY_HOST: cannot resolve {host!r}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise GatewayStartError(
                f"BEHEST_GATEWAY_PORT: {host}:{port} is already in use; stop the other process "
                "or choose another port"
            ) from None
        raise GatewayStartError(
            f"BEHEST_GATEWAY_HOST: cannot listen on {host}:{port} ({exc.strerror})"
        ) from None
    return sock


def base_url_for(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (wildcard addresses shown as loopback)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class GatewayServer(uvicorn.Server):
    """uvicorn's server with a started callback and optional signal handling."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        handle_signals: bool,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        """Create the server.

        Args:
            config: uvicorn config.
            handle_signals: install SIGINT/SIGTERM handlers (standalone only).
            on_started: called once the socket accepts connections.
        """
        super().__init__(config)
        self._handle_signals = handle_signals
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Leave signals to the host process unless running standalone."""
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start, turning uvicorn's ``sys.exit`` on failure into an exception."""
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            raise GatewayStartError("local gateway failed to start; see the log above") from None
        if self.started and self._on_started is not None:
            self._on_started()


def uvicorn_config(app: Starlette) -> uvicorn.Config:
    """The uvicorn settings shared by the standalone and embedded gateway.

    The request log comes from the gateway's own middleware, so uvicorn's access log is off,
    and uvicorn leaves logging configuration to the process (``log_config=None``).
    """
    return uvicorn.Config(
        app,
        access_log=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=2,
        # Idle connections stay open longer than clients keep them (httpx and the app's
        # client: 4-5 s), so a client never sends a request on a connection being closed.
        timeout_keep_alive=75,
    )


class EmbeddedGateway:
    """A gateway served by uvicorn as a task of the current event loop."""

    def __init__(
        self, config: GatewayConfig, *, host: str | None = None, port: int | None = None
    ) -> None:
        """Prepare (nothing listens until :meth:`start`).

        Args:
            config: gateway settings.
            host: listen address; defaults to ``config.host``.
            port: listen port; defaults to ``config.port`` (0 picks a free one).
        """
        self.app = create_app(config)
        self._host = host or config.host
        self._port = config.port if port is None else port
        self._server: GatewayServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.base_url = ""

    async def start(self) -> str:
        """Bind, start serving, and return once connections are accepted.

        Returns:
            The base URL, e.g. ``http://127.0.0.1:8787``.

        Raises:
            GatewayStartError: the port is taken or the server failed to start.
        """
        sock = bind_socket(self._host, self._port)
        self.base_url = base_url_for(sock)
        ready = asyncio.Event()
        install_log_filter()
        self._server = GatewayServer(
            uvicorn_config(self.app), handle_signals=False, on_started=ready.set
        )
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name="behest-local-gateway"
        )
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiter.cancel()
            sock.close()
            error = self._task.exception() if self._task.done() else None
            raise GatewayStartError(str(error) if error else "local gateway stopped while starting")
        logging.getLogger("behest_chat.gateway").info(
            "local gateway listening on %s", self.base_url
        )
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; open streams get a short grace period, then are cancelled."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            self._server.force_exit = True
            await self._task
        finally:
            self._server = self._task = None


@contextlib.asynccontextmanager
async def serve(
    config: GatewayConfig, host: str | None = None, port: int | None = None
) -> AsyncIterator[EmbeddedGateway]:
    """Run the gateway for the duration of an ``async with`` block.

    Args:
        config: gateway settings.
        host: listen address; defaults to ``config.host``.
        port: listen port; defaults to ``config.port``.

    Yields:
        The started gateway (``.base_url``, ``.app``).

    Raises:
        GatewayStartError: the port is taken or the server failed to start.
    """
    gateway = EmbeddedGateway(config, host=host, port=port)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()
