"""Password hashing with ``hashlib.scrypt``: hash, verify, and equal work for unknown users.

Encoded form: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` (standard base64, no padding),
so the cost can be raised later without breaking stored hashes. Verification compares in
constant time. Nothing here logs or echoes a password.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "hash_password",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 8
# Long enough for any passphrase; short enough that hashing stays cheap to ask for.
MAX_PASSWORD_LENGTH = 256

_N, _R, _P = 2**15, 8, 1  # ~32 MiB and a few tens of ms per hash
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAXMEM = 128 * 1024 * 1024
_MAX_N = 2**20


def hash_password(password: str) -> str:
    """Hash a password with a fresh random salt.

    Args:
        password: the plain password.

    Returns:
        The encoded hash (see the module docstring).
    """
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str | None) -> bool:
    """Check a password against an encoded hash, in constant time.

    Args:
        password: the password offered.
        encoded: the stored hash; ``None`` for an unknown user, which is checked against a
            dummy hash so the work (and the time taken) is the same.

    Returns:
        ``True`` only when the password matches ``encoded``.
    """
    target = encoded if encoded is not None else _dummy_hash()
    try:
        scheme, n_text, r_text, p_text, salt_text, hash_text = target.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt, expected = _unb64(salt_text), _unb64(hash_text)
    except (ValueError, binascii.Error):
        return False
    if scheme != "scrypt" or not 1 < n <= _MAX_N or n & (n - 1) or not expected:
        return False
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):  # r/p beyond what scrypt (or maxmem) allows
        return False
    return hmac.compare_digest(actual, expected) and encoded is not None


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = _HASH_BYTES) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
