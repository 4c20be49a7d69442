"""CORS of the local gateway: allowed, denied and absent origins, per project."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.gateway import RunningGateway, bearer

CHAT_BODY = {"messages": [{"role": "user", "content": "echo: ok"}]}
REQUESTED = "authorization, content-type, x-session-id, x-stainless-os"


def _preflight(base_url: str, origin: str, **extra: str) -> httpx.Response:
    return httpx.options(
        base_url + "/v1/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": REQUESTED,
            **extra,
        },
    )


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://localhost:5173"])
def test_allowed_preflight_is_204_echoing_origin_and_reflecting_headers(
    gateway: RunningGateway, origin: str
) -> None:
    response = _preflight(gateway.base_url, origin)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-headers"] == REQUESTED
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "Origin" in response.headers["vary"]
    assert int(response.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["x-trace-id"].startswith("tr_")


def test_allowed_actual_request_gets_origin_and_exposed_headers(gateway: RunningGateway) -> None:
    token = gateway.mint("cors-user")
    origin = "http://localhost:5173"
    ok = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=CHAT_BODY,
        headers={**bearer(token), "Origin": origin},
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == origin
    exposed = {h.strip().lower() for h in ok.headers["access-control-expose-headers"].split(",")}
    assert {"x-trace-id", "retry-after"} <= exposed
    assert "Origin" in ok.headers["vary"]
    # Errors must be readable by the browser too, or it cannot re-mint on 401.
    denied = httpx.post(
        gateway.base_url + "/v1/chat/completions", json=CHAT_BODY, headers={"Origin": origin}
    )
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3001",  # other port
        "https://localhost:3000",  # other scheme
        "http://127.0.0.1:3000",  # other host spelling
        "http://localhost:3000.evil.example",
        "null",
    ],
)
def test_disallowed_origin_gets_no_cors_headers(gateway: RunningGateway, origin: str) -> None:
    preflight = _preflight(gateway.base_url, origin)
    assert preflight.status_code == 403
    assert _cors_headers(preflight) == {}
    assert preflight.json()["error"]["code"] == "forbidden"
    token = gateway.mint("cors-user")
    actual = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=CHAT_BODY,
        headers={**bearer(token), "Origin": origin},
    )
    assert actual.status_code == 200  # served, but the browser will not hand it to the page
    assert _cors_headers(actual) == {}


def test_no_origin_means_no_cors_headers(gateway: RunningGateway) -> None:
    token = gateway.mint("cors-user")
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions", json=CHAT_BODY, headers=bearer(token)
    )
    assert response.status_code == 200
    assert _cors_headers(response) == {}
    plain_options = httpx.options(gateway.base_url + "/v1/chat/completions")
    assert plain_options.status_code == 204
    assert "POST" in plain_options.headers["allow"]
    assert _cors_headers(plain_options) == {}


def test_allowlist_is_per_project(gateway_factory: Callable[..., RunningGateway]) -> None:
    gw = gateway_factory(
        project={"allowed_origins": ["https://chat.example.com"]},
        extra_projects=[
            {
                "tenant_id": "tnt_b",
                "project_id": "proj_b",
                "slug": "bee",
                "allowed_origins": ["http://localhost:4000"],
            }
        ],
    )
    assert _preflight(gw.base_url, "https://chat.example.com").status_code == 204
    assert _preflight(gw.base_url, "http://localhost:3000").status_code == 403
    bee = {"Host": "bee.behest.localhost"}
    allowed = _preflight(gw.base_url, "http://localhost:4000", **bee)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:4000"
    assert _preflight(gw.base_url, "https://chat.example.com", **bee).status_code == 403


def test_allowed_origins_come_from_the_environment_by_default(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    gw = gateway_factory(
        {"BEHEST_ALLOWED_ORIGINS": "https://app.example.org, http://localhost:8080"},
        extra_projects=[{"tenant_id": "tnt_c", "project_id": "proj_c", "slug": "sea"}],
    )
    sea = {"Host": "sea.behest.localhost"}
    assert _preflight(gw.base_url, "http://localhost:8080", **sea).status_code == 204
    assert _preflight(gw.base_url, "https://app.example.org", **sea).status_code == 204
    assert _preflight(gw.base_url, "http://localhost:5173", **sea).status_code == 403
