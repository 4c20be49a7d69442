"""The fault switch: make the next requests fail in chosen ways, over HTTP.

Only present with ``BEHEST_GATEWAY_FAULTS=1`` and only for loopback clients (anyone else
gets 404). Tests drive real failure paths with it instead of mocks.

``POST /_gateway/faults`` takes one plan (JSON object); plans queue up in order:

======================  ==============================================================
field                   effect
======================  ==============================================================
``status``              answer this status (400-599) with the nested envelope;
                        optional ``code``, ``message``, ``details``, ``retry_after``
                        (``Retry-After`` seconds; 429 defaults to 1)
``stall_ms``            wait this long before the first byte (headers included);
                        combines with any other field
``cut_after``           streaming: drop the connection after K data frames
                        (no final chunk, no ``[DONE]``; the client sees a broken read)
``malformed_after``     streaming: after K frames send one frame that is not JSON,
                        then carry on
``error_event_after``   streaming: after K frames send an in-band
                        ``data: {"error": {...}}`` frame and end the body (no ``[DONE]``);
                        optional ``code``/``message``
``token_delay_ms``      streaming: pace this request's tokens at this delay
``count``               how many matching requests the plan applies to (default 1)
``path``                ``/v1/chat/completions`` (default) or ``/v1/auth/mint``
                        (mint takes only ``status`` and ``stall_ms``)
======================  ==============================================================

A plan with a streaming-only field is used only by streaming chat requests; a
non-streaming request leaves it queued. ``DELETE /_gateway/faults`` clears the queue.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from behest_chat.gateway.errors import GatewayError

__all__ = [
    "FAULT_PATHS",
    "FaultPlan",
    "FaultSwitch",
    "StreamCutError",
    "install_log_filter",
    "is_loopback",
]

CHAT_PATH = "/v1/chat/completions"
MINT_PATH = "/v1/auth/mint"
FAULT_PATHS = (CHAT_PATH, MINT_PATH)
_STREAM_FIELDS = ("cut_after", "malformed_after", "error_event_after", "token_delay_ms")
_MAX_STALL_MS = 120_000


class StreamCutError(Exception):
    """Raised inside a streaming response to drop the connection mid-body."""


@dataclass(frozen=True)
class FaultPlan:
    """One queued fault; see the module docstring for the fields."""

    path: str = CHAT_PATH
    count: int = 1
    status: int | None = None
    code: str | None = None
    message: str | None = None
    details: Mapping[str, Any] | None = None
    retry_after: int | None = None
    stall_ms: int = 0
    cut_after: int | None = None
    malformed_after: int | None = None
    error_event_after: int | None = None
    token_delay_ms: float | None = None

    @property
    def streaming_only(self) -> bool:
        """Whether only streaming chat requests use this plan."""
        return self.status is None and any(getattr(self, f) is not None for f in _STREAM_FIELDS)

    def to_error(self) -> GatewayError:
        """The error a ``status`` plan answers with (429 gets ``Retry-After``, default 1)."""
        status = self.status or 500
        headers = {}
        if self.retry_after is not None or status == 429:
            headers["Retry-After"] = str(self.retry_after if self.retry_after is not None else 1)
        return GatewayError(
            status,
            self.message or f"injected fault: HTTP {status}",
            code=self.code,
            details=self.details,
            headers=headers,
        )

    @classmethod
    def from_json(cls, data: Any) -> FaultPlan:
        """Validate a plan posted to ``/_gateway/faults``.

        Args:
            data: the parsed JSON body.

        Returns:
            The plan.

        Raises:
            ValueError: one line naming the field and the problem.
        """
        if not isinstance(data, dict):
            raise ValueError("fault plan must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown fault field")
        path = data.get("path", CHAT_PATH)
        if path not in FAULT_PATHS:
            raise ValueError(f"path: must be one of {', '.join(FAULT_PATHS)}")
        values: dict[str, Any] = {"path": path}
        values["count"] = _int_field(data, "count", 1, low=1)
        if "status" in data:
            values["status"] = _int_field(data, "status", 0, low=400, high=599)
        if "retry_after" in data:
            values["retry_after"] = _int_field(data, "retry_after", 0, low=0, high=86_400)
        values["stall_ms"] = _int_field(data, "stall_ms", 0, low=0, high=_MAX_STALL_MS)
        for name in ("cut_after", "malformed_after", "error_event_after"):
            if name in data:
                values[name] = _int_field(data, name, 0, low=0)
        if "token_delay_ms" in data:
            delay = data["token_delay_ms"]
            if (
                isinstance(delay, bool)
                or not isinstance(delay, int | float)
                or not 0 <= delay <= 10_000
            ):
                raise ValueError("token_delay_ms: must be a number between 0 and 10000")
            values["token_delay_ms"] = float(delay)
        for name in ("code", "message"):
            if name in data:
                if not isinstance(data[name], str) or not data[name]:
                    raise ValueError(f"{name}: must be a non-empty string")
                values[name] = data[name]
        if "details" in data:
            if not isinstance(data["details"], dict):
                raise ValueError("details: must be an object")
            values["details"] = data["details"]
        plan = cls(**values)
        stream_fields = [f for f in _STREAM_FIELDS if getattr(plan, f) is not None]
        if plan.status is not None and stream_fields:
            raise ValueError(f"{stream_fields[0]}: cannot be combined with status")
        if path == MINT_PATH and stream_fields:
            raise ValueError(f"{stream_fields[0]}: not available on {MINT_PATH}")
        if plan.status is None and not stream_fields and not plan.stall_ms:
            raise ValueError(
                "fault plan needs one of status, stall_ms, cut_after, malformed_after, "
                "error_event_after, token_delay_ms"
            )
        return plan


class FaultSwitch:
    """The queue of pending plans."""

    def __init__(self) -> None:
        self._pending: list[tuple[FaultPlan, int]] = []

    def add(self, plan: FaultPlan) -> None:
        """Queue a plan behind the ones already pending."""
        self._pending.append((plan, plan.count))

    def clear(self) -> None:
        """Drop every pending plan."""
        self._pending.clear()

    def take(self, path: str, *, streaming: bool) -> FaultPlan | None:
        """Use the first pending plan that applies to this request, if any.

        Args:
            path: the route's canonical path (``/auth/v1/auth/mint`` counts as mint).
            streaming: whether the request streams.

        Returns:
            The plan to apply, or None.
        """
        for index, (plan, remaining) in enumerate(self._pending):
            if plan.path != path or (plan.streaming_only and not streaming):
                continue
            if remaining <= 1:
                del self._pending[index]
            else:
                self._pending[index] = (plan, remaining - 1)
            return plan
        return None

    def describe(self) -> list[dict[str, Any]]:
        """The pending plans with their remaining counts, for ``/_gateway/stats``."""
        return [
            {k: v for k, v in {**asdict(plan), "count": remaining}.items() if v is not None}
            for plan, remaining in self._pending
        ]


class _HideStreamCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCutError))


def install_log_filter() -> None:
    """Keep deliberate stream cuts out of the server's error log.

    A cut is done by raising :class:`StreamCutError` after the response has started, which makes
    uvicorn close the connection and log the exception; the request log line already says
    what happened, so the traceback is noise.
    """
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideStreamCuts) for f in logger.filters):
        logger.addFilter(_HideStreamCuts())


def is_loopback(host: str) -> bool:
    """Whether a client address is loopback (127.0.0.0/8, ::1, or IPv4-mapped loopback).

    Args:
        host: the client's IP address as text.

    Returns:
        True only for a parseable loopback address.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _int_field(
    data: Mapping[str, Any], name: str, default: int, *, low: int, high: int | None = None
) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name}: must be {bound}")
    return value
