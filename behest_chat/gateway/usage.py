"""Usage endpoints for the token's user (contract §5.3): both documented shapes.

``GET /v1/billing/usage?from=YYYY-MM-DD&to=YYYY-MM-DD[&session_id=…]`` (TIERS shape)::

    {"project_id", "user_id", "window": {"from", "to"},
     "platform": {"requests", "input_tokens", "output_tokens", "cost_usd",
                  "by_model": [{"model", "requests", "cost_usd"}]},
     "byok": {same fields, always zero here},
     "by_session": [{"session_id", "requests", "input_tokens", "output_tokens"}]}

``GET /v1/usage?from=…&to=…&granularity=minute|hour|day[&user_id=…][&session_id=…]``
(SDK shape; ``from``/``to`` are ISO dates or datetimes)::

    {"project_id", "user_id", "granularity", "window": {"from", "to"},
     "totals": {"requests", "tokens", "input_tokens", "output_tokens", "cost_usd"},
     "breakdown": [{"timestamp", "requests", "tokens", "cost_usd"}],
     "by_session": [...]}

Both are scoped to the token's uid: a ``user_id`` naming someone else is 403. A date ``to``
includes that whole day; the default window is the current UTC month up to now. Costs are 0:
the gateway does not know provider prices. A request without a session id is reported
under ``session_id: null``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from behest_chat.gateway.errors import GatewayError
from behest_chat.gateway.runtime import Gateway
from behest_chat.gateway.store import UsageRecord, iso, summarize

__all__ = ["billing_usage", "sdk_usage"]

_GRANULARITY_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


async def billing_usage(request: Request) -> JSONResponse:
    """Handle ``GET /v1/billing/usage``."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request)
    start, end = _window(request, dates_only=True)
    session_id = request.query_params.get("session_id") or None
    records = gateway.store.usage(
        principal.project_id, principal.uid, start=start, end=end, session_id=session_id
    )
    platform = _bucket(records)
    body: dict[str, Any] = {
        "project_id": principal.project_id,
        "user_id": principal.uid,
        "window": {"from": iso(start), "to": iso(end - 1)},
        "platform": platform,
        "byok": _bucket([]),
        "by_session": _by_session(records),
    }
    if session_id is not None:
        body["session_id"] = session_id
    return JSONResponse(body)


async def sdk_usage(request: Request) -> JSONResponse:
    """Handle ``GET /v1/usage``."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request)
    asked_user = request.query_params.get("user_id")
    if asked_user and asked_user != principal.uid:
        raise GatewayError(403, "user_id: a token can only read its own user's usage")
    granularity = request.query_params.get("granularity", "day")
    if granularity not in _GRANULARITY_SECONDS:
        raise GatewayError(400, "granularity: must be minute, hour or day")
    start, end = _window(request, dates_only=False)
    session_id = request.query_params.get("session_id") or None
    records = gateway.store.usage(
        principal.project_id, principal.uid, start=start, end=end, session_id=session_id
    )
    step = _GRANULARITY_SECONDS[granularity]
    buckets: dict[int, list[UsageRecord]] = {}
    for record in records:
        buckets.setdefault(int(record.timestamp // step * step), []).append(record)
    inputs = sum(r.prompt_tokens for r in records)
    outputs = sum(r.completion_tokens for r in records)
    return JSONResponse(
        {
            "project_id": principal.project_id,
            "user_id": principal.uid,
            "granularity": granularity,
            "window": {"from": iso(start), "to": iso(end)},
            "totals": {
                "requests": len(records),
                "tokens": inputs + outputs,
                "input_tokens": inputs,
                "output_tokens": outputs,
                "cost_usd": 0.0,
            },
            "breakdown": [
                {
                    "timestamp": iso(bucket),
                    "requests": len(items),
                    "tokens": sum(r.prompt_tokens + r.completion_tokens for r in items),
                    "cost_usd": 0.0,
                }
                for bucket, items in sorted(buckets.items())
            ],
            "by_session": _by_session(records),
        }
    )


def _bucket(records: list[UsageRecord]) -> dict[str, Any]:
    return {
        "requests": len(records),
        "input_tokens": sum(r.prompt_tokens for r in records),
        "output_tokens": sum(r.completion_tokens for r in records),
        "cost_usd": 0.0,
        "by_model": [
            {"model": group["model"], "requests": group["requests"], "cost_usd": 0.0}
            for group in summarize(records, keys=("model",))
        ],
    }


def _by_session(records: Iterable[UsageRecord]) -> list[dict[str, Any]]:
    return [
        {
            "session_id": group["session_id"],
            "requests": group["requests"],
            "input_tokens": group["prompt_tokens"],
            "output_tokens": group["completion_tokens"],
        }
        for group in summarize(records, keys=("session_id",))
    ]


def _window(request: Request, *, dates_only: bool) -> tuple[float, float]:
    """The [start, end) window in Unix seconds from ``from``/``to``."""
    now = datetime.now(UTC)
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    start = _parse_bound(request.query_params.get("from"), "from", dates_only, end=False)
    end = _parse_bound(request.query_params.get("to"), "to", dates_only, end=True)
    start_ts = (start or month_start).timestamp()
    end_ts = (end or now + timedelta(seconds=1)).timestamp()
    if end_ts <= start_ts:
        raise GatewayError(400, "to: must be after from")
    return start_ts, end_ts


def _parse_bound(value: str | None, name: str, dates_only: bool, *, end: bool) -> datetime | None:
    if not value:
        return None
    try:
        if dates_only or len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            # A date as the end of the window includes that whole day.
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        expected = "YYYY-MM-DD" if dates_only else "an ISO date or datetime"
        raise GatewayError(400, f"{name}: must be {expected}") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    # A datetime end is inclusive.
    return moment + timedelta(microseconds=1) if end else moment
