"""Token arguments, local RS256 signing and both mint answer shapes."""

import json
import time

import jwt
import pytest

from behest_chat.behest import errors
from behest_chat.behest.keys import SigningKey, generate_signing_key_pem, parse_key
from behest_chat.behest.tokens import (
    MintedToken,
    mint_body,
    normalize_tier,
    sign_token,
    token_from_mint_response,
    validate_ttl,
    validate_user_id,
)

FAKE_JWT = "aaa.bbb.ccc"


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    key = parse_key(generate_signing_key_pem())
    assert isinstance(key, SigningKey)
    return key


@pytest.mark.parametrize("user_id", ["a", "alice", "user-1@example.com", "x" * 255, "Ünïcode"])
def test_valid_user_ids(user_id: str) -> None:
    assert validate_user_id(user_id) == user_id


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 256, "at most 255"),
        ("admin", "reserved"),
        ("Admin", "reserved"),
        ("dashboard-service", "reserved"),
        ("system", "reserved"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_invalid_user_ids(user_id: object, expected: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=expected) as caught:
        validate_user_id(user_id)
    assert str(caught.value).startswith("user_id: ")
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("tier", "expected"),
    [(1, 1), (2, 2), (3, 3), ("free", 1), ("pro", 2), ("MAX", 3), (" 2 ", 2), (None, None)],
)
def test_tiers(tier: object, expected: int | None) -> None:
    assert normalize_tier(tier) == expected


@pytest.mark.parametrize("tier", [0, 4, -1, "gold", "", True, 1.0, [1]])
def test_invalid_tiers(tier: object) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=r"^tier: must be 1, 2, 3"):
        normalize_tier(tier)


@pytest.mark.parametrize("ttl", [60, 900, 86400])
def test_valid_ttls(ttl: int) -> None:
    assert validate_ttl(ttl) == ttl


@pytest.mark.parametrize("ttl", [59, 0, -1, 86401, 900.0, "900", True, None])
def test_invalid_ttls(ttl: object) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=r"^ttl: "):
        validate_ttl(ttl)


def test_signed_token_header_claims_and_order(signing_key: SigningKey) -> None:
    token = sign_token(
        signing_key.private_key,
        kid="kid_7h4m2p",
        tenant_id="tnt_1",
        project_id="proj_1",
        user_id="alice",
        tier=2,
        ttl=900,
        session_id="sess-1",
        issuer="https://api.behest.ai",
        audience="behest",
        now=1_800_000_000,
    )
    assert jwt.get_unverified_header(token.token) == {
        "alg": "RS256",
        "kid": "kid_7h4m2p",
        "typ": "JWT",
    }
    # Verify the signature with the public half, and read the payload's key order raw.
    claims = jwt.decode(
        token.token,
        signing_key.public_key,
        algorithms=["RS256"],
        audience="behest",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    raw_payload = json.loads(jwt.api_jws.base64url_decode(token.token.split(".")[1]))
    assert list(raw_payload) == [
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
    assert claims["tid"] == "tnt_1"
    assert claims["pid"] == "proj_1"
    assert claims["uid"] == "alice"
    assert claims["role"] == "user"
    assert claims["scp"] == []
    assert claims["iss"] == "https://api.behest.ai"
    assert claims["iat"] == claims["nbf"] == 1_800_000_000
    assert claims["exp"] == 1_800_000_900
    assert claims["sid"] == "sess-1"
    assert claims["tier"] == 2
    assert len(claims["jti"]) == 36
    assert token.expires_at == 1_800_000_900
    assert (token.ttl, token.session_id, token.user_id, token.tier) == (900, "sess-1", "alice", 2)


def test_signed_token_without_tier_omits_the_claim(signing_key: SigningKey) -> None:
    token = sign_token(
        signing_key.private_key,
        kid="k",
        tenant_id="t",
        project_id="p",
        user_id="bob",
        tier=None,
        ttl=60,
        session_id="s",
        issuer="i",
        audience="a",
    )
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert "tier" not in claims
    assert abs(claims["iat"] - time.time()) < 5


def test_two_signed_tokens_have_distinct_jti(signing_key: SigningKey) -> None:
    kwargs = dict(
        kid="k",
        tenant_id="t",
        project_id="p",
        user_id="u",
        tier=1,
        ttl=60,
        session_id="s",
        issuer="i",
        audience="a",
    )
    first = sign_token(signing_key.private_key, **kwargs)
    second = sign_token(signing_key.private_key, **kwargs)
    jtis = {
        jwt.decode(t.token, options={"verify_signature": False})["jti"] for t in (first, second)
    }
    assert len(jtis) == 2


def test_mint_body_has_no_role_and_omits_missing_tier() -> None:
    assert mint_body("alice", 1, 900, "s") == {
        "user_id": "alice",
        "ttl": 900,
        "session_id": "s",
        "tier": 1,
    }
    assert "tier" not in mint_body("alice", None, 900, "s")


def test_mint_answer_in_authmodes_shape() -> None:
    token = token_from_mint_response(
        {"jwt": FAKE_JWT, "ttl": 600, "session_id": "server-sid", "project_id": "p"},
        user_id="alice",
        tier=1,
        requested_ttl=900,
        session_id="mine",
        sent_at=1000.7,
    )
    assert (token.token, token.ttl, token.session_id, token.expires_at) == (
        FAKE_JWT,
        600,
        "server-sid",
        1600,
    )
    assert (token.user_id, token.tier) == ("alice", 1)


def test_mint_answer_in_apiref_shape() -> None:
    token = token_from_mint_response(
        {"access_token": FAKE_JWT, "token_type": "Bearer", "expires_in": 300},
        user_id="alice",
        tier=None,
        requested_ttl=900,
        session_id="mine",
        sent_at=1000,
    )
    assert (token.token, token.ttl, token.session_id, token.expires_at) == (
        FAKE_JWT,
        300,
        "mine",
        1300,
    )


def test_mint_answer_without_lifetime_uses_the_requested_ttl() -> None:
    token = token_from_mint_response(
        {"jwt": FAKE_JWT, "ttl": "soon"},
        user_id="u",
        tier=1,
        requested_ttl=120,
        session_id="s",
        sent_at=0,
    )
    assert token.ttl == 120


@pytest.mark.parametrize(
    "payload", [{}, {"jwt": ""}, {"jwt": 5}, {"access_token": "not-a-jwt"}, ["jwt"], "jwt"]
)
def test_mint_answer_without_token_is_refused(payload: object) -> None:
    with pytest.raises(errors.BehestAPIError) as caught:
        token_from_mint_response(
            payload,
            user_id="u",
            tier=1,
            requested_ttl=60,
            session_id="s",
            sent_at=0,
            trace_id="tr",
        )
    assert caught.value.code == "invalid_response"
    assert caught.value.trace_id == "tr"


def test_minted_token_serialises_as_the_quickstart_bundle() -> None:
    token = MintedToken(
        token=FAKE_JWT, ttl=900, session_id="s", expires_at=1_790_000_000, user_id="u", tier=1
    )
    assert token.to_json() == {
        "token": FAKE_JWT,
        "ttl": 900,
        "sessionId": "s",
        "expiresAt": 1_790_000_000,
    }
    assert json.loads(json.dumps(token.to_json()))["expiresAt"] == 1_790_000_000
    assert token.seconds_left(1_789_999_950) == 50


def test_minted_token_repr_masks_the_jwt() -> None:
    token = MintedToken(token="secret.jwt.value", ttl=60, session_id="s", expires_at=1)
    assert "secret" not in repr(token)
    assert "***" in repr(token)
    assert "secret" not in str(token)
