"""Per-user Behest tokens: argument checks, local RS256 signing, and mint answers.

Pure functions, no I/O. ``MintedToken`` is what both key modes produce; it serialises as the
quickstart's ``{token, ttl, sessionId, expiresAt}`` bundle (``expiresAt`` in Unix seconds).

Choices where the contract leaves room (contract §2.2, §3.3):

- Reserved user ids are refused case-insensitively (``admin``, ``dashboard-service``,
  ``system``), which is stricter than the gateway and never looser.
- Tier may be None: the claim and the mint field are then omitted and the gateway applies its
  default tier. Names ``free``/``pro``/``max`` are sent as 1/2/3.
- ``role`` is never sent in the mint body (contract §10 rule 4); self-signed tokens carry
  ``role: "user"`` as the v1.5 SDK does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from behest_chat.behest.errors import BehestAPIError, InvalidArgumentError

__all__ = [
    "MAX_TTL",
    "MIN_TTL",
    "RESERVED_USER_IDS",
    "TIER_IDS",
    "MintedToken",
    "Tier",
    "mint_body",
    "normalize_tier",
    "sign_token",
    "token_from_mint_response",
    "validate_ttl",
    "validate_user_id",
]

MIN_TTL = 60
MAX_TTL = 86_400
MAX_USER_ID_CHARS = 255
RESERVED_USER_IDS = frozenset({"admin", "dashboard-service", "system"})
TIER_IDS: Mapping[str, int] = {"free": 1, "pro": 2, "max": 3}

Tier = int | str | None


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A per-user JWT and what the browser needs to use it.

    Attributes:
        token: the JWT (masked in ``repr``).
        ttl: lifetime in seconds.
        session_id: the session id bound to the token (``sid``).
        expires_at: expiry as Unix seconds.
        user_id: the end user the token was minted for (not serialised).
        tier: the numeric tier it was minted with, or None (not serialised).
    """

    token: str = field(repr=False)
    ttl: int
    session_id: str
    expires_at: int
    user_id: str = ""
    tier: int | None = None

    def to_json(self) -> dict[str, str | int]:
        """The quickstart's token bundle: ``{"token", "ttl", "sessionId", "expiresAt"}``."""
        return {
            "token": self.token,
            "ttl": self.ttl,
            "sessionId": self.session_id,
            "expiresAt": self.expires_at,
        }

    def seconds_left(self, now: float) -> float:
        """Seconds until expiry as seen from ``now`` (Unix seconds)."""
        return self.expires_at - now

    def __repr__(self) -> str:
        return (
            f"MintedToken(token='***', ttl={self.ttl}, session_id={self.session_id!r}, "
            f"expires_at={self.expires_at}, user_id={self.user_id!r}, tier={self.tier!r})"
        )


def validate_user_id(user_id: object) -> str:
    """Check an end-user id: a string of 1 to 255 characters that is not reserved.

    Raises:
        InvalidArgumentError: naming ``user_id`` and the problem.
    """
    if not isinstance(user_id, str):
        raise InvalidArgumentError(f"user_id: must be a string, got {type(user_id).__name__}")
    if not user_id or not user_id.strip():
        raise InvalidArgumentError("user_id: must not be empty")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidArgumentError(
            f"user_id: must be at most {MAX_USER_ID_CHARS} characters, got {len(user_id)}"
        )
    if user_id.casefold() in RESERVED_USER_IDS:
        raise InvalidArgumentError(f"user_id: {user_id!r} is reserved")
    return user_id


def normalize_tier(tier: object) -> int | None:
    """Map a tier to its numeric id: 1/2/3 or ``free``/``pro``/``max``; None stays None.

    Raises:
        InvalidArgumentError: naming ``tier`` and the accepted values.
    """
    if tier is None:
        return None
    if isinstance(tier, str):
        numeric = TIER_IDS.get(tier.strip().lower())
        if numeric is None and tier.strip().isdigit():
            numeric = int(tier.strip())
        tier = numeric if numeric is not None else tier
    if isinstance(tier, int) and not isinstance(tier, bool) and tier in TIER_IDS.values():
        return tier
    raise InvalidArgumentError(f"tier: must be 1, 2, 3, 'free', 'pro' or 'max', got {tier!r}")


def validate_ttl(ttl: object) -> int:
    """Check a token lifetime: whole seconds between 60 and 86400.

    Raises:
        InvalidArgumentError: naming ``ttl`` and the allowed range.
    """
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        raise InvalidArgumentError(f"ttl: must be an integer number of seconds, got {ttl!r}")
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidArgumentError(f"ttl: must be between {MIN_TTL} and {MAX_TTL}, got {ttl}")
    return ttl


def sign_token(
    private_key: rsa.RSAPrivateKey,
    *,
    kid: str,
    tenant_id: str,
    project_id: str,
    user_id: str,
    tier: int | None,
    ttl: int,
    session_id: str,
    issuer: str,
    audience: str,
    now: float | None = None,
) -> MintedToken:
    """Sign a per-user RS256 JWT locally with the claims of contract §3.3.

    Header ``{alg: RS256, kid, typ: JWT}``; claims in the order
    ``tid pid uid role scp iss aud iat nbf exp jti sid tier`` (``tier`` omitted when None).
    Arguments are expected to be validated already.

    Returns:
        The signed token; ``expires_at`` equals the ``exp`` claim.
    """
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "tid": tenant_id,
        "pid": project_id,
        "uid": user_id,
        "role": "user",
        "scp": [],
        "iss": issuer,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ttl,
        "jti": str(uuid.uuid4()),
        "sid": session_id,
    }
    if tier is not None:
        claims["tier"] = tier
    encoded = jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})
    return MintedToken(
        token=encoded,
        ttl=ttl,
        session_id=session_id,
        expires_at=issued_at + ttl,
        user_id=user_id,
        tier=tier,
    )


def mint_body(user_id: str, tier: int | None, ttl: int, session_id: str) -> dict[str, Any]:
    """The JSON body of ``POST /v1/auth/mint`` (no ``role``: the key decides it)."""
    body: dict[str, Any] = {"user_id": user_id, "ttl": ttl, "session_id": session_id}
    if tier is not None:
        body["tier"] = tier
    return body


def token_from_mint_response(
    payload: object,
    *,
    user_id: str,
    tier: int | None,
    requested_ttl: int,
    session_id: str,
    sent_at: float,
    trace_id: str | None = None,
) -> MintedToken:
    """Read a 200 mint answer in either documented shape (contract §2.3).

    The token comes from ``jwt`` or ``access_token``; the lifetime from ``ttl`` or
    ``expires_in`` (else the requested ttl); ``session_id`` from the answer when present.
    ``expires_at`` is counted from ``sent_at`` (when the request left), so it is never later
    than the gateway's own ``exp``.

    Raises:
        BehestAPIError: the answer carries no usable token.
    """
    if not isinstance(payload, dict):
        raise BehestAPIError(
            "mint answer is not a JSON object",
            status=200,
            code="invalid_response",
            trace_id=trace_id,
        )
    token = payload.get("jwt") or payload.get("access_token")
    if not isinstance(token, str) or token.count(".") != 2:
        raise BehestAPIError(
            "mint answer has no jwt/access_token",
            status=200,
            code="invalid_response",
            trace_id=trace_id,
        )
    ttl = requested_ttl
    for name in ("ttl", "expires_in"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            ttl = value
            break
    answered_session = payload.get("session_id")
    if isinstance(answered_session, str) and answered_session:
        session_id = answered_session
    return MintedToken(
        token=token,
        ttl=ttl,
        session_id=session_id,
        expires_at=int(sent_at) + ttl,
        user_id=user_id,
        tier=tier,
    )
