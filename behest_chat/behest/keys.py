"""Behest key strings: which mode a key selects, and the RSA material it carries.

Accepted forms of ``BEHEST_KEY`` (contract §3.2 and §9):

- ``behest_sk_live_<hex>``: an API key; tokens are minted remotely by the gateway.
- ``behest_pk_`` + raw PEM: a tenant RSA private key; tokens are signed locally.
- ``behest_pk_`` + base64 of the PEM: the form the Behest READMEs document.
- bare base64 of the PEM (no prefix).

PKCS#8 and PKCS#1 (traditional RSA) PEM private keys are both accepted.
Errors name the variable and the problem, never the key itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "API_KEY_PREFIX",
    "SIGNING_KEY_PREFIX",
    "ApiKey",
    "KeyFormatError",
    "SigningKey",
    "fingerprint",
    "generate_signing_key_pem",
    "parse_key",
]

API_KEY_PREFIX = "behest_sk_live_"
SIGNING_KEY_PREFIX = "behest_pk_"
_API_KEY_BODY = re.compile(r"[A-Za-z0-9]{16,128}")
_MIN_RSA_BITS = 2048


class KeyFormatError(ValueError):
    """A key string that selects no mode, or carries unusable key material."""


@dataclass(frozen=True)
class ApiKey:
    """A ``behest_sk_live_`` API key, valid only for the mint endpoint."""

    secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"ApiKey(fingerprint={fingerprint(self.secret)!r})"


@dataclass(frozen=True)
class SigningKey:
    """An RSA private key used to sign per-user JWTs locally (RS256)."""

    private_key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The public half, as registered with the gateway."""
        return self.private_key.public_key()

    def public_pem(self) -> str:
        """The public half as a SubjectPublicKeyInfo PEM string."""
        return (
            self.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def public_jwk(self, kid: str) -> dict[str, str]:
        """The public half as a JWK (RFC 7517) entry for a JWKS document."""
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def __repr__(self) -> str:
        return f"SigningKey(fingerprint={fingerprint(self.public_pem())!r})"


def parse_key(key: str, *, variable: str = "BEHEST_KEY") -> ApiKey | SigningKey:
    """Read a Behest key string and return what it is.

    Args:
        key: the key string, in any of the forms in the module docstring.
        variable: the setting's name, used in error messages.

    Raises:
        KeyFormatError: one line naming ``variable`` and what is wrong; the key is never echoed.
    """
    key = (key or "").strip()
    if not key:
        raise KeyFormatError(f"{variable}: missing; expected behest_sk_live_… or behest_pk_…")
    if key.startswith(API_KEY_PREFIX):
        if not _API_KEY_BODY.fullmatch(key[len(API_KEY_PREFIX) :]):
            raise KeyFormatError(
                f"{variable}: malformed API key; expected behest_sk_live_ followed by "
                "16–128 letters or digits"
            )
        return ApiKey(key)
    if key.startswith("behest_sk_"):
        raise KeyFormatError(f"{variable}: only live API keys (behest_sk_live_…) are accepted")
    if key.startswith(SIGNING_KEY_PREFIX):
        rest = key[len(SIGNING_KEY_PREFIX) :].strip()
        pem = rest if "-----BEGIN" in rest else _b64decode_pem(rest, variable)
        return SigningKey(_load_private_pem(pem, variable))
    if "-----BEGIN" in key:
        return SigningKey(_load_private_pem(key, variable))
    try:
        pem = _b64decode_pem(key, variable)
    except KeyFormatError:
        raise KeyFormatError(
            f"{variable}: expected behest_sk_live_… or behest_pk_… (or a base64 PEM private key)"
        ) from None
    return SigningKey(_load_private_pem(pem, variable))


def fingerprint(secret: str) -> str:
    """A short, non-reversible label for a secret, safe to show and log."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def generate_signing_key_pem() -> str:
    """A fresh 2048-bit RSA private key as a PKCS#8 PEM string."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _b64decode_pem(text: str, variable: str) -> str:
    compact = "".join(text.split())
    try:
        decoded = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        pem = decoded.decode("ascii")
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{variable}: signing key is neither PEM nor base64 PEM") from None
    if "PRIVATE KEY-----" not in pem:
        raise KeyFormatError(f"{variable}: base64 payload is not a PEM private key")
    return pem


def _load_private_pem(pem: str, variable: str) -> rsa.RSAPrivateKey:
    if "PRIVATE KEY-----" not in pem:
        raise KeyFormatError(f"{variable}: PEM is not a private key")
    try:
        private_key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise KeyFormatError(f"{variable}: PEM private key could not be read") from None
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise KeyFormatError(f"{variable}: signing key must be an RSA key (RS256)")
    if private_key.key_size < _MIN_RSA_BITS:
        raise KeyFormatError(f"{variable}: RSA key must be at least {_MIN_RSA_BITS} bits")
    return private_key


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
