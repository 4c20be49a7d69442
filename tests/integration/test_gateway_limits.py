"""Tier limits of the local gateway: 429 with Retry-After, 402 with details."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fixtures.gateway import RunningGateway, bearer, start_gateway

TINY = {
    "free": {"rpm": 2},
    "pro": {"requests_per_day": 2},
    "max": {"tokens_per_day": 50},
}


def _ask(gw: RunningGateway, token: str, content: str = "echo: hi") -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": content}]},
        headers=bearer(token),
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(
        tmp_path_factory.mktemp("tiny"), {"BEHEST_GATEWAY_LIMITS": json.dumps(TINY)}
    )
    yield running
    running.stop()


def test_rpm_breach_is_429_with_integer_retry_after(tiny: RunningGateway) -> None:
    token = tiny.mint("rpm-user", tier=1)
    assert [_ask(tiny, token).status_code for _ in range(2)] == [200, 200]
    limited = _ask(tiny, token)
    assert limited.status_code == 429
    assert limited.headers["retry-after"].isdigit()
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    error = limited.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["tier"] == "free"
    assert error["details"]["limit"] == {"rpm": 2}
    # Limits are per (project, uid): another user is unaffected.
    assert _ask(tiny, tiny.mint("rpm-neighbour", tier=1)).status_code == 200
    # Refused requests are not counted, and a reset clears the window.
    tiny.reset()
    assert _ask(tiny, token).status_code == 200


def test_daily_request_cap_is_402_with_details(tiny: RunningGateway) -> None:
    token = tiny.mint("daily-user", tier="pro")
    assert [_ask(tiny, token).status_code for _ in range(2)] == [200, 200]
    capped = _ask(tiny, token)
    assert capped.status_code == 402
    assert "retry-after" not in capped.headers
    error = capped.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {
        "tier": "pro",
        "limit": {"requests_per_day": 2},
        "usage": {"requests_today": 2},
    }
    assert "pro" in error["message"]


def test_daily_token_cap_is_402_with_details(tiny: RunningGateway) -> None:
    token = tiny.mint("token-user", tier=3)
    first = _ask(tiny, token, "long: 60")
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    capped = _ask(tiny, token)
    assert capped.status_code == 402
    assert capped.json()["error"]["details"] == {
        "tier": "max",
        "limit": {"tokens_per_day": 50},
        "usage": {"tokens_today": used},
    }


def test_tier_comes_from_the_token_only(tiny: RunningGateway) -> None:
    token = tiny.mint("free-user")  # no tier → free (rpm 2)
    for _ in range(2):
        httpx.post(
            tiny.base_url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "echo: x"}], "tier": 3},
            headers={**bearer(token), "X-Tier": "3"},
        )
    assert _ask(tiny, token).status_code == 429


def test_project_limits_from_the_config_file(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    gw = gateway_factory(project={"limits": {"free": {"requests_per_day": 1}}})
    token = gw.mint("project-limited")
    assert _ask(gw, token).status_code == 200
    capped = _ask(gw, token)
    assert capped.status_code == 402
    assert capped.json()["error"]["details"]["limit"] == {"requests_per_day": 1}
