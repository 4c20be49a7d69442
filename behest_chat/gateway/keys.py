"""The gateway's own mint key, the registered tenant keys, and the JWKS document.

Tokens minted by ``/v1/auth/mint`` are signed with the gateway key (RS256). That key comes
from ``BEHEST_GATEWAY_SIGNING_KEY`` or, by default, is generated at start, so every token
from a previous run stops verifying after a restart (clients simply re-mint on 401). Its
``kid`` is derived from the public key, so a configured key keeps its kid across restarts.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from behest_chat.gateway.config import GatewayConfig, Project

__all__ = ["KeyRing", "TrustedKey", "public_jwk"]


@dataclass(frozen=True)
class TrustedKey:
    """A public key the gateway accepts signatures from.

    Attributes:
        kid: key id in the JWT header.
        public_key: the RSA public key.
        project: the only project this key may sign for; None for the gateway's own key.
    """

    kid: str
    public_key: rsa.RSAPublicKey = field(repr=False)
    project: Project | None = None


def public_jwk(public_key: rsa.RSAPublicKey, kid: str) -> dict[str, str]:
    """The JWK (RFC 7517) form of an RSA public key.

    Args:
        public_key: the key.
        kid: its key id.

    Returns:
        ``{"kty", "use", "alg", "kid", "n", "e"}``.
    """
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


class KeyRing:
    """All verification keys by kid, plus the private key used to mint."""

    def __init__(self, config: GatewayConfig) -> None:
        """Load or generate the mint key and index every registered tenant key.

        Args:
            config: the gateway config.

        Raises:
            ValueError: a tenant kid collides with the gateway's own kid.
        """
        self._mint_key = config.signing_key or rsa.generate_private_key(
            public_exponent=65537, key_size=2048
        )
        self.mint_kid = "gw_" + _thumbprint(self._mint_key.public_key())
        self._keys: dict[str, TrustedKey] = {
            self.mint_kid: TrustedKey(self.mint_kid, self._mint_key.public_key(), None)
        }
        for project in config.projects:
            for kid, public_key in project.signing_keys.items():
                if kid in self._keys:
                    raise ValueError(f"BEHEST_GATEWAY_CONFIG: kid {kid!r} is already in use")
                self._keys[kid] = TrustedKey(kid, public_key, project)

    def lookup(self, kid: str) -> TrustedKey | None:
        """The trusted key registered under ``kid``, if any."""
        return self._keys.get(kid)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Sign claims with the gateway key (RS256, ``kid`` header).

        Args:
            claims: the JWT payload, in the order it should appear.

        Returns:
            The compact JWT.
        """
        return jwt.encode(
            dict(claims),
            self._mint_key,
            algorithm="RS256",
            headers={"kid": self.mint_kid, "typ": "JWT"},
        )

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS document: the gateway key first, then every tenant key."""
        return {"keys": [public_jwk(key.public_key, key.kid) for key in self._keys.values()]}


def _thumbprint(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
