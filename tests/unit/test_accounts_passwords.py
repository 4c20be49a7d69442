"""Password hashing: format, verification, malformed hashes, and equal work for unknown users."""

from __future__ import annotations

import time

import pytest

from behest_chat.accounts.passwords import hash_password, verify_password

PASSWORD = "correct horse battery"


def test_hash_has_the_documented_form_and_no_password() -> None:
    encoded = hash_password(PASSWORD)
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**15), "8", "1")
    assert len(salt) >= 20 and len(digest) >= 40
    assert PASSWORD not in encoded


def test_verify_accepts_only_the_right_password() -> None:
    encoded = hash_password(PASSWORD)
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + " ", encoded)
    assert not verify_password("", encoded)
    assert not verify_password(PASSWORD.upper(), encoded)


def test_each_hash_has_its_own_salt() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)


def test_non_ascii_passwords_round_trip() -> None:
    encoded = hash_password("pässwörd-密码-🔑")
    assert verify_password("pässwörd-密码-🔑", encoded)
    assert not verify_password("passwort-密码-🔑", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain-text-password",
        "bcrypt$32768$8$1$c2FsdA$aGFzaA",
        "scrypt$32768$8$1$not base64!$aGFzaA",
        "scrypt$32768$8$1$c2FsdA$",
        "scrypt$1000$8$1$c2FsdA$aGFzaA",  # n not a power of two
        "scrypt$1073741824$8$1$c2FsdA$aGFzaA",  # n far above the allowed cost
        "scrypt$x$8$1$c2FsdA$aGFzaA",
        "scrypt$32768$8$1$c2FsdA",
    ],
)
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert verify_password(PASSWORD, encoded) is False


def test_unknown_user_is_checked_against_a_dummy_hash() -> None:
    encoded = hash_password(PASSWORD)
    verify_password("warm-up", None)  # the dummy hash is made once per process

    # Taken in turns, so that a burst of load from other processes (the suite runs in two)
    # slows both kinds alike rather than one of them.
    timings: dict[str | None, list[float]] = {None: [], encoded: []}
    for _ in range(5):
        for stored in (None, encoded):
            start = time.perf_counter()
            verify_password("wrong password", stored)
            timings[stored].append(time.perf_counter() - start)

    assert verify_password(PASSWORD, None) is False
    # The same scrypt work is done whether or not the user exists.
    assert min(timings[None]) > 0.5 * min(timings[encoded])
