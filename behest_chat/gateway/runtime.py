"""The live state of one gateway: config, keys, counters, model, and request helpers."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
from starlette.requests import Request
from starlette.types import Receive

from behest_chat.gateway.auth import Principal, VerifiedTokens, bearer_token, verify_token
from behest_chat.gateway.config import GatewayConfig, Project
from behest_chat.gateway.errors import GatewayError
from behest_chat.gateway.faults import FaultSwitch
from behest_chat.gateway.keys import KeyRing
from behest_chat.gateway.offline import OfflineModel
from behest_chat.gateway.store import Store
from behest_chat.gateway.tiers import (
    LimitStore,
    QuotaExceededError,
    RateLimitedError,
)
from behest_chat.gateway.upstream import Upstream

__all__ = ["Gateway", "read_json", "wait_for_disconnect"]

_DRAIN_FACTOR = 8


class Gateway:
    """Everything a request handler needs, shared by all requests of one app."""

    def __init__(self, config: GatewayConfig, *, limits: LimitStore | None = None) -> None:
        """Set up keys, counters and the model (the upstream client opens at startup).

        Args:
            config: validated settings.
            limits: counter backend; by default Redis when ``REDIS_URL`` is set, else in memory.
        """
        self.config = config
        self.keyring = KeyRing(config)
        self.verified_tokens = VerifiedTokens()
        self.limits: LimitStore = limits or config.limit_store()
        self.store = Store()
        self.faults = FaultSwitch()
        self.offline = OfflineModel()
        self.upstream: Upstream | None = None
        self._slugs = {p.slug: p for p in config.projects if p.slug}

    @property
    def model_id(self) -> str:
        """The one model this gateway serves (contract §4.1: one active model per project)."""
        return self.config.upstream.model if self.config.upstream else self.offline.model_id

    async def startup(self) -> None:
        """Open the upstream client, if one is configured."""
        if self.config.upstream is not None:
            self.upstream = Upstream(self.config.upstream)

    async def shutdown(self) -> None:
        """Close the upstream client."""
        if self.upstream is not None:
            await self.upstream.aclose()
            self.upstream = None

    async def reset(self) -> None:
        """Forget counters, limits, usage, threads and pending faults."""
        self.store.reset()
        self.faults.clear()
        await self.limits.reset()

    def project_for_host(self, host: str) -> Project:
        """The project whose slug is the Host's first label, else the default project.

        Args:
            host: the Host header, e.g. ``amber-fox-042.behest.app:443``.

        Returns:
            The selected project.
        """
        label = host.strip().lower().split(".", 1)[0].split(":", 1)[0]
        return self._slugs.get(label, self.config.default_project)

    def origins_for_host(self, host: str) -> tuple[str, ...]:
        """The CORS allowlist of the project a Host selects."""
        return self.project_for_host(host).allowed_origins

    def authenticate(self, request: Request) -> Principal:
        """Verify the request's per-user token against the Host's project.

        Args:
            request: the incoming request.

        Returns:
            The principal; its uid is also put on ``request.state`` for the log line.

        Raises:
            GatewayError: 401 or 403.
        """
        token = bearer_token(request.headers.get("authorization"))
        principal = verify_token(
            token,
            keyring=self.keyring,
            project=self.project_for_host(request.headers.get("host", "")),
            audience=self.config.audience,
            leeway_seconds=self.config.leeway_seconds,
            verified=self.verified_tokens,
        )
        request.state.uid = principal.uid
        return principal

    async def admit(self, principal: Principal) -> None:
        """Count one chat request against the user's tier, or refuse it.

        Raises:
            GatewayError: 402 ``quota_exceeded`` with details, or 429 with ``Retry-After``.
        """
        project = self.project_for_principal(principal)
        try:
            await self.limits.admit(
                principal.project_id,
                principal.uid,
                principal.tier,
                project.limit_for(principal.tier),
                time.time(),
            )
        except QuotaExceededError as exc:
            ((name, value),) = exc.limit.items()
            raise GatewayError(
                402,
                f"daily limit of the {exc.tier} tier reached ({name} {value}); upgrade to continue",
                details=exc.details,
            ) from None
        except RateLimitedError as exc:
            raise GatewayError(
                429,
                f"rate limit of the {exc.tier} tier reached ({exc.rpm} requests per minute)",
                details={
                    "tier": exc.tier,
                    "limit": {"rpm": exc.rpm},
                    "retry_after": exc.retry_after,
                },
                headers={"Retry-After": str(exc.retry_after)},
            ) from None

    def project_for_principal(self, principal: Principal) -> Project:
        """The configured project a verified principal belongs to."""
        for project in self.config.projects:
            if (
                project.project_id == principal.project_id
                and project.tenant_id == principal.tenant_id
            ):
                return project
        return self.config.default_project


async def read_json(request: Request, limit: int) -> Any:
    """Read and parse a JSON body, refusing oversized or malformed ones.

    Args:
        request: the incoming request.
        limit: largest accepted body in bytes.

    Returns:
        The parsed JSON value (None for an empty body).

    Raises:
        GatewayError: 413 ``payload_too_large`` or 400 ``validation_error``.
    """
    too_large = GatewayError(413, f"request body is larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _DRAIN_FACTOR * limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        # Keep reading (and dropping) a moderately oversized body so the client finishes
        # sending and can read the 413 instead of a reset connection.
        if size > _DRAIN_FACTOR * limit:
            raise too_large
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise too_large
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GatewayError(400, "request body is not valid JSON") from None


async def wait_for_disconnect(receive: Receive, seconds: float) -> bool:
    """Wait up to ``seconds``, returning early if the client disconnects.

    Only call this after the body has been read, or it would consume the body.

    Args:
        receive: the ASGI receive channel.
        seconds: how long to wait.

    Returns:
        True if the client disconnected.
    """
    with anyio.move_on_after(seconds):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
    return False
