"""Mint, JWKS and token verification of the local gateway, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.gateway import RunningGateway, bearer

CHAT_BODY = {"messages": [{"role": "user", "content": "echo: ok"}]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _other_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(private_pem: str) -> bytes:
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _claims(gw: RunningGateway) -> dict[str, Any]:
    now = int(time.time())
    return {
        "tid": gw.tenant_id,
        "pid": gw.project_id,
        "uid": "mallory",
        "aud": "behest",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }


def _alg_none(gw: RunningGateway) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": gw.kid}).encode())
    return f"{header}.{_b64(json.dumps(_claims(gw)).encode())}."


def _hs256_with_public_key(gw: RunningGateway) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": gw.kid}).encode())
    payload = _b64(json.dumps(_claims(gw)).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(_public_pem(gw.signing_key_pem), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _altered_payload(gw: RunningGateway) -> str:
    header, _, signature = gw.sign("alice").split(".")
    forged = _claims(gw) | {"uid": "admin-of-everything"}
    return f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"


FORGED: dict[str, Callable[[RunningGateway], str]] = {
    "alg none": _alg_none,
    "HS256 signed with the public key": _hs256_with_public_key,
    "unknown kid": lambda gw: gw.sign(header={"kid": "kid_nobody"}),
    "no kid": lambda gw: gw.sign(header={"kid": None}),
    "bad signature (other key, registered kid)": lambda gw: gw.sign(key_pem=_other_private_pem()),
    "altered payload": _altered_payload,
    "expired beyond leeway": lambda gw: gw.sign(
        exp=int(time.time()) - 60, iat=int(time.time()) - 700
    ),
    "not yet valid": lambda gw: gw.sign(nbf=int(time.time()) + 300),
    "issued in the future": lambda gw: gw.sign(iat=int(time.time()) + 300, nbf=None),
    "wrong audience": lambda gw: gw.sign(aud="someone-else"),
    "no audience": lambda gw: gw.sign(aud=None),
    "no exp": lambda gw: gw.sign(exp=None),
    "missing uid": lambda gw: gw.sign(uid=None),
    "empty uid": lambda gw: gw.sign(uid=""),
    "unknown tier": lambda gw: gw.sign(tier=7),
    "sk_live API key as Bearer": lambda gw: gw.api_key,
    "garbage": lambda gw: "not-a-token",
    "three garbage parts": lambda gw: "aaa.bbb.ccc",
}


@pytest.mark.parametrize("name", list(FORGED))
def test_forged_tokens_are_rejected_with_401(gateway: RunningGateway, name: str) -> None:
    token = FORGED[name](gateway)
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions", json=CHAT_BODY, headers=bearer(token)
    )
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_token"
    assert token not in error["message"]
    assert response.headers["x-trace-id"].startswith("tr_")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}],
    ids=["no header", "bare scheme", "basic scheme"],
)
def test_missing_or_empty_bearer_is_401(gateway: RunningGateway, headers: dict[str, str]) -> None:
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions", json=CHAT_BODY, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_empty_bearer_sent_verbatim_is_401(gateway: RunningGateway) -> None:
    # httpx refuses a header value with a trailing space, so write the request by hand.
    host, port = gateway.base_url.removeprefix("http://").split(":")
    body = json.dumps(CHAT_BODY).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Authorization: Bearer \r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 401")
    assert b'"code":"invalid_token"' in rest
    assert b"x-trace-id: tr_" in rest


@pytest.mark.parametrize("claim", ["tid", "pid"])
def test_other_tenant_or_project_is_403(gateway: RunningGateway, claim: str) -> None:
    token = gateway.sign(**{claim: "someone_elses"})
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions", json=CHAT_BODY, headers=bearer(token)
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"iss": "behest"},
        {"iss": "https://api.behest.app"},
        {"iss": None, "role": None, "scp": None, "jti": None, "sid": None},
        {"exp": -3},  # seconds from now: inside the default 10 s leeway
        {"tier": "pro"},
        {"role": "admin"},
    ],
    ids=[
        "sdk shape",
        "legacy iss",
        "mint iss",
        "legacy claims",
        "just expired",
        "tier name",
        "role claim",
    ],
)
def test_self_signed_tokens_are_accepted(
    gateway: RunningGateway, overrides: dict[str, Any]
) -> None:
    if "exp" in overrides:  # relative, so the token is made when the test runs
        overrides = {**overrides, "exp": int(time.time()) + overrides["exp"]}
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=CHAT_BODY,
        headers=bearer(gateway.sign(**overrides)),
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "ok"


def _verify_with_jwks(gateway: RunningGateway, token: str) -> dict[str, Any]:
    keys = httpx.get(gateway.base_url + "/.well-known/jwks.json").json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [k for k in keys if k["kid"] == kid]
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience="behest")


@pytest.mark.parametrize("path", ["/v1/auth/mint", "/auth/v1/auth/mint"])
def test_mint_returns_the_union_shape_and_a_verifiable_token(
    gateway: RunningGateway, path: str
) -> None:
    response = httpx.post(
        gateway.base_url + path,
        json={"user_id": "alice", "role": "admin", "ttl": 900, "session_id": "conv-1", "tier": 2},
        headers=bearer(gateway.api_key),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["jwt"] == body["access_token"]
    assert body["token_type"] == "Bearer"
    assert body["project_id"] == gateway.project_id
    assert body["ttl"] == body["expires_in"] == 900
    assert body["session_id"] == "conv-1"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-trace-id"].startswith("tr_")
    claims = _verify_with_jwks(gateway, body["jwt"])
    assert list(claims) == [
        "tid",
        "pid",
        "uid",
        "role",
        "scp",
        "iss",
        "aud",
        "iat",
        "nbf",
        "exp",
        "jti",
        "sid",
        "tier",
    ]
    assert (claims["tid"], claims["pid"], claims["uid"]) == (
        gateway.tenant_id,
        gateway.project_id,
        "alice",
    )
    assert claims["role"] == "user"  # the body's role is ignored
    assert claims["tier"] == 2
    assert claims["sid"] == "conv-1"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["iss"] == "https://api.behest.app"


def test_mint_defaults_and_tier_names(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.base_url + "/v1/auth/mint",
        json={"user_id": "bob", "tier": "max"},
        headers=bearer(gateway.api_key),
    )
    body = response.json()
    claims = _verify_with_jwks(gateway, body["jwt"])
    assert body["ttl"] == 3600
    assert len(body["session_id"]) == 36 and claims["sid"] == body["session_id"]
    assert claims["tier"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "x" * 256}, "user_id"),
        ({"user_id": 42}, "user_id"),
        ({"user_id": "admin"}, "user_id"),
        ({"user_id": "dashboard-service"}, "user_id"),
        ({"user_id": "system"}, "user_id"),
        ({"user_id": "a", "ttl": 59}, "ttl"),
        ({"user_id": "a", "ttl": 86401}, "ttl"),
        ({"user_id": "a", "ttl": "900"}, "ttl"),
        ({"user_id": "a", "ttl": True}, "ttl"),
        ({"user_id": "a", "tier": 4}, "tier"),
        ({"user_id": "a", "tier": "gold"}, "tier"),
        ({"user_id": "a", "session_id": 5}, "session_id"),
        (["user_id", "a"], "JSON object"),
    ],
)
def test_mint_rejects_bad_bodies_with_400(gateway: RunningGateway, body: Any, field: str) -> None:
    response = httpx.post(
        gateway.base_url + "/v1/auth/mint", json=body, headers=bearer(gateway.api_key)
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"]


def test_mint_rejects_malformed_json(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.base_url + "/v1/auth/mint", content=b"{user_id:", headers=bearer(gateway.api_key)
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "credential",
    [None, "behest_sk_live_" + "0" * 32, "behest_pk_whatever", "garbage"],
    ids=["missing", "unknown key", "signing key form", "garbage"],
)
def test_mint_needs_a_known_api_key(gateway: RunningGateway, credential: str | None) -> None:
    headers = bearer(credential) if credential else {}
    response = httpx.post(
        gateway.base_url + "/v1/auth/mint", json={"user_id": "alice"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_minted_token_works_and_a_minted_token_is_no_mint_key(gateway: RunningGateway) -> None:
    token = gateway.mint("carol")
    assert httpx.get(gateway.base_url + "/v1/models", headers=bearer(token)).status_code == 200
    again = httpx.post(
        gateway.base_url + "/v1/auth/mint", json={"user_id": "carol"}, headers=bearer(token)
    )
    assert again.status_code == 401


def test_jwks_lists_gateway_and_tenant_keys_without_private_parts(gateway: RunningGateway) -> None:
    response = httpx.get(gateway.base_url + "/.well-known/jwks.json")
    keys = response.json()["keys"]
    kids = [k["kid"] for k in keys]
    minted_kid = jwt.get_unverified_header(gateway.mint())["kid"]
    assert kids[0] == minted_kid
    assert gateway.kid in kids
    for key in keys:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert set(key) == {"kty", "use", "alg", "kid", "n", "e"}
    assert "max-age" in response.headers["cache-control"]


def test_projects_are_selected_by_host_slug_and_keys_stay_in_their_project(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    second_pem = _other_private_pem()
    gw = gateway_factory(
        extra_projects=[
            {
                "tenant_id": "tnt_two",
                "project_id": "proj_two",
                "slug": "second-app",
                "signing_keys": {"kid_two": second_pem},
            }
        ]
    )
    second_host = {"Host": "second-app.behest.localhost"}
    own = gw.sign(key_pem=second_pem, header={"kid": "kid_two"}, tid="tnt_two", pid="proj_two")
    ok = httpx.get(gw.base_url + "/v1/models", headers={**bearer(own), **second_host})
    assert ok.status_code == 200

    first_project_token = gw.mint("alice")
    wrong_host = httpx.get(
        gw.base_url + "/v1/models", headers={**bearer(first_project_token), **second_host}
    )
    assert wrong_host.status_code == 403

    # The second project's key signing a token that claims the first project.
    borrowed = gw.sign(key_pem=second_pem, header={"kid": "kid_two"})
    response = httpx.get(gw.base_url + "/v1/models", headers=bearer(borrowed))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_log_has_one_line_per_request_and_no_secrets(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    gw = gateway_factory()
    token = gw.mint("dave")
    httpx.post(gw.base_url + "/v1/chat/completions", json=CHAT_BODY, headers=bearer(token))
    httpx.post(gw.base_url + "/v1/chat/completions", json=CHAT_BODY, headers=bearer(gw.api_key))
    gw.stop()  # flush and close the log
    log = gw.log_text()
    assert gw.api_key not in log
    assert token not in log and token.split(".")[2] not in log
    assert "BEGIN" not in log
    request_lines = [
        line for line in log.splitlines() if "behest_chat.gateway:" in line and " trace=tr_" in line
    ]
    assert len(request_lines) == 3
    assert "POST /v1/auth/mint 200" in request_lines[0] and "uid=dave" in request_lines[0]
    assert "POST /v1/chat/completions 200" in request_lines[1] and "uid=dave" in request_lines[1]
    assert "POST /v1/chat/completions 401" in request_lines[2] and "uid=-" in request_lines[2]
    assert all(line.rstrip().endswith("ms") for line in request_lines)
