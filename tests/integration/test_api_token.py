"""POST /api/behest/token over real HTTP: uvicorn, a migrated SQLite file, the local gateway."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

import httpx
import pytest

from behest_chat.accounts.models import utcnow
from behest_chat.behest import keys
from tests.fixtures.app_api import APP_ORIGIN, sign_up, user_id, verified_claims

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "/api/behest/token"


def test_signed_in_user_gets_a_token_for_themselves(api_server, gateway) -> None:
    client = sign_up(api_server, "alice")
    before = int(time.time())
    response = client.post(TOKEN, headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "ttl", "sessionId", "expiresAt"}
    assert body["ttl"] == 900
    assert before + 895 <= body["expiresAt"] <= int(time.time()) + 905
    claims = verified_claims(gateway, body["token"])
    assert claims["uid"] == f"user-{user_id(api_server, 'alice')}"
    assert claims["tier"] == 1


def test_without_a_session_the_answer_is_401(api_server) -> None:
    for cookies in ({}, {"behest_chat_session": "A" * 43}, {"behest_chat_session": "junk"}):
        response = httpx.post(api_server.url + TOKEN, cookies=cookies)
        assert response.status_code == 401
        assert response.json() == {"error": "not signed in"}
        assert response.headers["cache-control"] == "no-store"


def test_a_revoked_session_gets_401(api_server) -> None:
    client = sign_up(api_server, "bob")
    secret = client.cookies["behest_chat_session"]
    assert client.post("/api/auth/logout", headers={"Origin": APP_ORIGIN}).status_code == 200
    replay = httpx.post(api_server.url + TOKEN, cookies={"behest_chat_session": secret})
    assert replay.status_code == 401
    assert replay.json() == {"error": "not signed in"}


def test_an_expired_session_gets_401(api_server) -> None:
    client = sign_up(api_server, "carol")
    assert client.post(TOKEN).status_code == 200
    past = (utcnow() - timedelta(minutes=1)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(api_server.database.path) as conn:
        conn.execute("UPDATE auth_session SET expires_at = ?", (past,))
    assert client.post(TOKEN).status_code == 401


def test_user_and_tier_claims_from_the_request_are_ignored(api_server, gateway) -> None:
    client = sign_up(api_server, "dave")
    own_uid = f"user-{user_id(api_server, 'dave')}"
    response = client.post(
        TOKEN,
        params={"user_id": "admin", "uid": "user-1", "tier": "3"},
        json={"user_id": "admin", "uid": "victim", "tier": 3, "ttl": 86400},
        headers={
            "Origin": APP_ORIGIN,
            "X-User-Id": "victim",
            "X-End-User-Id": "victim",
            "X-Tier": "max",
            "X-Behest-Tier": "3",
        },
    )
    assert response.status_code == 200, response.text
    claims = verified_claims(gateway, response.json()["token"])
    assert (claims["uid"], claims["tier"]) == (own_uid, 1)
    assert response.json()["ttl"] == 900


def test_set_tier_cli_changes_the_minted_tier(api_server, gateway) -> None:
    client = sign_up(api_server, "erin")
    assert verified_claims(gateway, client.post(TOKEN).json()["token"])["tier"] == 1
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    result = subprocess.run(
        [sys.executable, "-m", "behest_chat.accounts", "set-tier", "erin", "pro"],
        cwd=ROOT,
        env={**env, "DATABASE_URL": api_server.database.url, "APP_ENV_FILE": os.devnull},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # The same sign-in: the tier is read from the database on every request.
    assert verified_claims(gateway, client.post(TOKEN).json()["token"])["tier"] == 2


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://localhost:3999", "https://localhost:3000", "null"]
)
def test_a_foreign_origin_is_refused_even_with_a_valid_session(api_server, origin: str) -> None:
    client = sign_up(api_server, "frank")
    response = client.post(TOKEN, headers={"Origin": origin})
    assert response.status_code == 403
    assert "token" not in response.json()
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["cache-control"] == "no-store"


def test_allowed_origins_get_exact_cors_headers(api_server) -> None:
    client = sign_up(api_server, "gina")
    for origin in ("http://localhost:3000", "http://127.0.0.1:3000"):
        response = client.post(TOKEN, headers={"Origin": origin})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
        assert response.headers["vary"] == "Origin"


def test_preflight_only_for_allowed_origins(api_server) -> None:
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = httpx.options(api_server.url + TOKEN, headers={"Origin": APP_ORIGIN, **asks})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    refused = httpx.options(
        api_server.url + TOKEN, headers={"Origin": "http://evil.example", **asks}
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_only_post_is_served(api_server, method: str) -> None:
    client = sign_up(api_server, "hank")
    response = client.request(method, TOKEN)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, OPTIONS"
    assert response.json() == {"error": "method not allowed"}


def test_an_upstream_failure_is_a_short_502(api_server, gateway) -> None:
    client = sign_up(api_server, "ivan")
    # The client retries a 5xx twice, so all three attempts must fail.
    gateway.set_fault(path="/v1/auth/mint", status=503, message="mint backend down", count=3)
    try:
        response = client.post(TOKEN)
    finally:
        gateway.clear_faults()
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "Behest did not issue a token. Try again shortly."
    assert body["code"] == "server_error"
    assert body["traceId"]
    assert set(body) == {"error", "code", "traceId"}
    assert gateway.api_key not in response.text
    assert "mint backend down" not in response.text
    assert client.post(TOKEN).status_code == 200


def test_a_refused_key_is_a_502_too(api_server, gateway) -> None:
    client = sign_up(api_server, "ivy")
    gateway.set_fault(path="/v1/auth/mint", status=401, code="invalid_api_key")
    try:
        response = client.post(TOKEN)
    finally:
        gateway.clear_faults()
    assert response.status_code == 502
    assert response.json()["code"] == "invalid_api_key"


def test_local_signing_mode_mints_tokens_the_gateway_accepts(api_server_factory, gateway) -> None:
    server = api_server_factory(
        BEHEST_KEY=keys.SIGNING_KEY_PREFIX + gateway.signing_key_pem,
        BEHEST_KID=gateway.kid,
        BEHEST_TENANT_ID=gateway.tenant_id,
        BEHEST_PROJECT_ID=gateway.project_id,
        BEHEST_TOKEN_TTL="300",
    )
    assert server.settings.mode == "local signing"
    client = sign_up(server, "judy")
    body = client.post(TOKEN).json()
    assert body["ttl"] == 300
    chat = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hello"}]},
        headers={"Authorization": f"Bearer {body['token']}", "X-Session-Id": body["sessionId"]},
        timeout=30,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"]
