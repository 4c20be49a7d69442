"""Bearer checks: API keys on mint, per-user JWTs everywhere else.

JWT rules (contract §3.4, §12.3):

- RS256 only; the header ``alg`` must say so before any key is touched, which rules out
  ``none`` and HS256 signed with the public key.
- ``kid`` must name the gateway key or a registered tenant key; a tenant key may only sign
  for its own project.
- ``exp`` is required; ``exp``, ``nbf`` and ``iat`` are checked with the configured leeway
  (at most 30 s). ``aud`` must equal the configured audience. ``iss`` is not pinned: minted
  tokens say ``https://api.behest.app``, the SDKs' self-signed ones ``https://api.behest.ai``.
- ``tid``/``pid`` must equal the project selected by the Host header, else 403 ``forbidden``.
- ``uid`` (required) and ``tier`` come only from the token; ``role`` is always ``user``,
  whatever the claim says, as Kong forces for tenant-signed tokens.

Failures answer 401 ``invalid_token`` with a short reason that never includes the token.

A client sends the same token with every request of its life, and PyJWT's checks cost
about 0.3 ms each time (its base64 checks more than the signature itself), so the claims of
a token whose signature, key and audience passed are kept by the token's exact text
(:class:`VerifiedTokens`). Only time can change how such a token fares: its expiry is
checked again on every use. Keys do not change while the gateway runs.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import jwt

from behest_chat.gateway.config import Project
from behest_chat.gateway.errors import GatewayError
from behest_chat.gateway.keys import KeyRing, TrustedKey
from behest_chat.gateway.tiers import parse_tier

__all__ = ["Principal", "VerifiedTokens", "bearer_token", "match_api_key", "verify_token"]

_MAX_UID_LENGTH = 255
_VERIFIED_TOKENS_KEPT = 4096


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for.

    Attributes:
        tenant_id: ``tid``.
        project_id: ``pid``.
        uid: end-user id.
        tier: tier name (free, pro or max).
        sid: session id claim, if any.
        role: always ``user``.
    """

    tenant_id: str
    project_id: str
    uid: str
    tier: str
    sid: str | None = None
    role: str = "user"


def bearer_token(authorization: str | None) -> str:
    """Extract the credential from an ``Authorization: Bearer …`` header.

    Args:
        authorization: the header value, or None.

    Returns:
        The credential, stripped.

    Raises:
        GatewayError: 401 when the header is missing, not Bearer, or empty.
    """
    if not authorization:
        raise GatewayError(401, "missing Authorization: Bearer header")
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise GatewayError(401, "Authorization must use the Bearer scheme")
    credential = credential.strip()
    if not credential:
        raise GatewayError(401, "empty Bearer credential")
    return credential


def match_api_key(presented: str, projects: tuple[Project, ...]) -> Project | None:
    """Find the project owning an API key, comparing every key in constant time.

    Args:
        presented: the Bearer credential.
        projects: all served projects.

    Returns:
        The owning project, or None.
    """
    found: Project | None = None
    presented_bytes = presented.encode()
    for project in projects:
        for key in project.api_keys:
            # No early exit: the time taken does not depend on which key matched.
            if hmac.compare_digest(presented_bytes, key.encode()) and found is None:
                found = project
    return found


class VerifiedTokens:
    """The claims and key of tokens already verified, by the token's text (the oldest are
    dropped beyond ``capacity``). One per gateway: its keys and audience are fixed."""

    def __init__(self, capacity: int = _VERIFIED_TOKENS_KEPT) -> None:
        self._capacity = capacity
        self._verified: dict[str, tuple[TrustedKey, dict[str, Any]]] = {}

    def get(self, token: str, leeway_seconds: int) -> tuple[TrustedKey, dict[str, Any]] | None:
        """The token's key and claims, unless it was never verified or has expired since."""
        found = self._verified.get(token)
        if found is not None and time.time() >= found[1]["exp"] + leeway_seconds:
            self._verified.pop(token, None)
            return None  # verified again, to fail with PyJWT's own reason
        return found

    def put(self, token: str, trusted: TrustedKey, claims: dict[str, Any]) -> None:
        if len(self._verified) >= self._capacity:
            # Dicts keep insertion order: the first key is the oldest.
            self._verified.pop(next(iter(self._verified)), None)
        self._verified[token] = (trusted, claims)


def verify_token(
    token: str,
    *,
    keyring: KeyRing,
    project: Project,
    audience: str,
    leeway_seconds: int,
    verified: VerifiedTokens | None = None,
) -> Principal:
    """Verify a per-user JWT for ``project``.

    Args:
        token: the Bearer credential.
        keyring: trusted keys.
        project: the project selected by the request's Host.
        audience: required ``aud``.
        leeway_seconds: clock-skew leeway.
        verified: tokens this gateway verified before (checked and filled here).

    Returns:
        The principal.

    Raises:
        GatewayError: 401 ``invalid_token`` or 403 ``forbidden``.
    """
    if token.startswith("behest_sk_"):
        raise GatewayError(
            401, "API keys authenticate only the mint endpoint; send a minted per-user token"
        )
    known = verified.get(token, leeway_seconds) if verified is not None else None
    if known is not None:
        trusted, claims = known
    else:
        trusted, claims = _verify(token, keyring, audience, leeway_seconds)
        if verified is not None:
            verified.put(token, trusted, claims)
    uid = claims.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > _MAX_UID_LENGTH:
        raise GatewayError(401, "token has no valid uid claim")
    if claims.get("tid") != project.tenant_id or claims.get("pid") != project.project_id:
        raise GatewayError(403, "token belongs to another tenant or project")
    if trusted.project is not None and trusted.project.project_id != project.project_id:
        raise GatewayError(403, "token is signed by another project's key")
    try:
        tier = parse_tier(claims.get("tier"))
    except ValueError:
        raise GatewayError(401, "token tier claim is not 1, 2, 3, free, pro or max") from None
    sid = claims.get("sid")
    return Principal(
        tenant_id=project.tenant_id,
        project_id=project.project_id,
        uid=uid,
        tier=tier,
        sid=sid if isinstance(sid, str) and sid else None,
    )


def _verify(
    token: str, keyring: KeyRing, audience: str, leeway_seconds: int
) -> tuple[TrustedKey, dict[str, Any]]:
    """The key that signed ``token`` and its claims, once its signature, audience and
    times have passed."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise GatewayError(401, "token is malformed") from None
    if header.get("alg") != "RS256":
        raise GatewayError(401, "token algorithm is not accepted; RS256 is required")
    kid = header.get("kid")
    trusted = keyring.lookup(kid) if isinstance(kid, str) else None
    if trusted is None:
        raise GatewayError(401, "token key id (kid) is unknown")
    return trusted, _decode(token, trusted.public_key, audience, leeway_seconds)


def _decode(token: str, public_key: Any, audience: str, leeway_seconds: int) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            audience=audience,
            leeway=leeway_seconds,
            options={"require": ["exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise GatewayError(401, "token has expired") from None
    except jwt.ImmatureSignatureError:
        raise GatewayError(401, "token is not yet valid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise GatewayError(401, f"token has no {exc.claim} claim") from None
    except jwt.InvalidAudienceError:
        raise GatewayError(401, "token audience is not accepted") from None
    except jwt.InvalidSignatureError:
        raise GatewayError(401, "token signature is invalid") from None
    except jwt.InvalidTokenError:
        raise GatewayError(401, "token is malformed") from None
