"""Fault plans, the fault queue, and the loopback check."""

from __future__ import annotations

import pytest

from behest_chat.gateway.faults import FaultPlan, FaultSwitch, is_loopback

CHAT, MINT = "/v1/chat/completions", "/v1/auth/mint"


def test_plan_defaults_and_error() -> None:
    plan = FaultPlan.from_json({"status": 429})
    assert (plan.path, plan.count, plan.streaming_only) == (CHAT, 1, False)
    error = plan.to_error()
    assert (error.status, error.code, error.headers) == (429, "rate_limited", {"Retry-After": "1"})
    custom = FaultPlan.from_json(
        {"status": 500, "code": "upstream_down", "message": "down", "retry_after": 9}
    )
    assert (
        custom.to_error().code,
        custom.to_error().message,
        custom.to_error().headers["Retry-After"],
    ) == (
        "upstream_down",
        "down",
        "9",
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("text", "JSON object"),
        ({"status": "500"}, "status"),
        ({"status": 600}, "status"),
        ({"stall_ms": 10**7}, "stall_ms"),
        ({"token_delay_ms": "fast"}, "token_delay_ms"),
        ({"code": "", "status": 500}, "code"),
        ({"details": [], "status": 500}, "details"),
        ({"status": 500, "error_event_after": 1}, "error_event_after"),
        ({"path": MINT, "token_delay_ms": 5}, "token_delay_ms"),
    ],
)
def test_invalid_plans_name_the_field(data: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FaultPlan.from_json(data)


def test_switch_applies_plans_in_order_per_path_and_count() -> None:
    switch = FaultSwitch()
    switch.add(FaultPlan.from_json({"status": 500, "count": 2}))
    switch.add(FaultPlan.from_json({"status": 503, "path": MINT}))
    switch.add(FaultPlan.from_json({"status": 502}))
    assert switch.take(MINT, streaming=False).status == 503
    assert switch.take(MINT, streaming=False) is None
    assert [switch.take(CHAT, streaming=True).status for _ in range(3)] == [500, 500, 502]
    assert switch.take(CHAT, streaming=True) is None


def test_streaming_only_plans_wait_for_a_streaming_request() -> None:
    switch = FaultSwitch()
    switch.add(FaultPlan.from_json({"cut_after": 2}))
    switch.add(FaultPlan.from_json({"stall_ms": 100}))
    assert switch.take(CHAT, streaming=False).stall_ms == 100
    assert switch.describe() == [{"path": CHAT, "count": 1, "stall_ms": 0, "cut_after": 2}]
    assert switch.take(CHAT, streaming=True).cut_after == 2
    switch.add(FaultPlan.from_json({"status": 500}))
    switch.clear()
    assert switch.take(CHAT, streaming=True) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.7", False),
        ("::ffff:192.0.2.7", False),
        ("fd00::2", False),
        ("localhost", False),
        ("", False),
    ],
)
def test_only_loopback_addresses_reach_the_switch(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected
