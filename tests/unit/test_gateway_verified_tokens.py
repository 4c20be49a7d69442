"""The gateway keeps the claims of tokens it verified; what may change is checked again."""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import Any

import pytest

from behest_chat.gateway.auth import VerifiedTokens, verify_token
from behest_chat.gateway.config import GatewayConfig
from behest_chat.gateway.errors import GatewayError
from behest_chat.gateway.keys import KeyRing

CONFIG = GatewayConfig.from_env({"BEHEST_KEY": "behest_sk_live_" + secrets.token_hex(16)})
KEYRING = KeyRing(CONFIG)
PROJECT = CONFIG.default_project


def token(**claims: Any) -> str:
    now = int(time.time())
    base = {"tid": PROJECT.tenant_id, "pid": PROJECT.project_id, "uid": "alice", "tier": 2}
    return KEYRING.sign({**base, "aud": "behest", "iat": now, "exp": now + 600, **claims})


def verify(text: str, verified: VerifiedTokens, *, leeway: int = 0, project=PROJECT):
    return verify_token(
        text,
        keyring=KEYRING,
        project=project,
        audience="behest",
        leeway_seconds=leeway,
        verified=verified,
    )


def test_a_token_verified_again_gives_the_same_principal() -> None:
    verified, text = VerifiedTokens(), token()
    first = verify(text, verified)
    assert verified.get(text, 0) is not None
    assert verify(text, verified) == first
    assert (first.uid, first.tier) == ("alice", "pro")


def test_a_kept_token_past_its_expiry_is_refused() -> None:
    verified, text = VerifiedTokens(), token(exp=int(time.time()) - 10)
    verify(text, verified, leeway=30)  # within the leeway: accepted and kept
    with pytest.raises(GatewayError, match="token has expired"):
        verify(text, verified, leeway=0)
    assert verified.get(text, 30) is None  # dropped once refused


def test_a_kept_token_is_still_checked_against_the_request_project() -> None:
    verified, text = VerifiedTokens(), token()
    verify(text, verified)
    other = dataclasses.replace(PROJECT, project_id="proj_other")
    with pytest.raises(GatewayError) as refused:
        verify(text, verified, project=other)
    assert refused.value.status == 403


def test_only_the_exact_text_of_a_verified_token_is_kept() -> None:
    verified, text = VerifiedTokens(), token()
    verify(text, verified)
    header, payload, signature = text.split(".")
    altered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(GatewayError, match=r"signature|malformed"):
        verify(altered, verified)


def test_the_oldest_tokens_are_dropped_beyond_capacity() -> None:
    verified = VerifiedTokens(capacity=2)
    texts = [token(uid=f"user{n}") for n in range(3)]
    for text in texts:
        verify(text, verified)
    assert verified.get(texts[0], 0) is None
    assert verified.get(texts[1], 0) is not None and verified.get(texts[2], 0) is not None
