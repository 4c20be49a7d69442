"""Key strings: every accepted form, every refusal, and no secret in any message or repr."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from behest_chat.behest.keys import (
    ApiKey,
    KeyFormatError,
    SigningKey,
    fingerprint,
    generate_signing_key_pem,
    parse_key,
)

API_KEY = "behest_sk_live_" + "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def pkcs8_pem() -> str:
    return generate_signing_key_pem()


@pytest.fixture(scope="module")
def pkcs1_pem(pkcs8_pem: str) -> str:
    key = serialization.load_pem_private_key(pkcs8_pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def public_numbers(key: SigningKey) -> rsa.RSAPublicNumbers:
    return key.public_key.public_numbers()


def test_api_key_selects_api_key_mode() -> None:
    parsed = parse_key(f"  {API_KEY}\n")
    assert isinstance(parsed, ApiKey)
    assert parsed.secret == API_KEY


@pytest.mark.parametrize(
    "form",
    ["prefixed_raw", "prefixed_b64", "bare_b64", "bare_raw", "bare_b64_wrapped"],
)
@pytest.mark.parametrize("pem_format", ["pkcs8", "pkcs1"])
def test_every_signing_key_form_loads_the_same_key(
    form: str, pem_format: str, pkcs8_pem: str, pkcs1_pem: str
) -> None:
    pem = pkcs8_pem if pem_format == "pkcs8" else pkcs1_pem
    encoded = b64(pem)
    key_string = {
        "prefixed_raw": "behest_pk_" + pem,
        "prefixed_b64": "behest_pk_" + encoded,
        "bare_b64": encoded,
        "bare_raw": pem,
        # Base64 wrapped at 64 columns, as `base64` prints it.
        "bare_b64_wrapped": "\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64)),
    }[form]
    parsed = parse_key(key_string)
    assert isinstance(parsed, SigningKey)
    reference = parse_key("behest_pk_" + pkcs8_pem)
    assert isinstance(reference, SigningKey)
    assert public_numbers(parsed) == public_numbers(reference)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("", "missing"),
        ("   ", "missing"),
        ("behest_sk_test_0123456789abcdef0123", "only live API keys"),
        ("behest_sk_live_short", "malformed API key"),
        ("behest_sk_live_" + "x" * 20 + "!", "malformed API key"),
        ("sk-openai-0123456789", "expected behest_sk_live_"),
        ("behest_pk_not base64 at all!!", "neither PEM nor base64"),
        ("behest_pk_" + b64("hello world"), "not a PEM private key"),
        (b64("just some text"), "expected behest_sk_live_"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a private key"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "could not be read"),
    ],
)
def test_bad_keys_name_the_variable_and_the_problem(key: str, expected: str) -> None:
    with pytest.raises(KeyFormatError) as caught:
        parse_key(key, variable="BEHEST_KEY")
    message = str(caught.value)
    assert message.startswith("BEHEST_KEY: ")
    assert expected in message
    assert "\n" not in message
    if key.strip():
        assert key.strip() not in message


def test_error_never_contains_key_material(pkcs8_pem: str) -> None:
    damaged = pkcs8_pem.replace("A", "B", 40)
    with pytest.raises(KeyFormatError) as caught:
        parse_key("behest_pk_" + damaged)
    body_line = damaged.splitlines()[1]
    assert body_line not in str(caught.value)


def test_non_rsa_key_is_refused() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(KeyFormatError, match="must be an RSA key"):
        parse_key("behest_pk_" + pem)


def test_short_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(KeyFormatError, match="at least 2048 bits"):
        parse_key(pem)


def test_reprs_show_a_fingerprint_not_the_secret(pkcs8_pem: str) -> None:
    api = parse_key(API_KEY)
    signing = parse_key(pkcs8_pem)
    assert API_KEY not in repr(api)
    assert fingerprint(API_KEY) in repr(api)
    assert "PRIVATE" not in repr(signing)
    assert repr(signing).startswith("SigningKey(fingerprint='sha256:")


def test_fingerprint_is_stable_and_short() -> None:
    assert fingerprint(API_KEY) == fingerprint(API_KEY)
    assert fingerprint(API_KEY) != fingerprint(API_KEY + "0")
    assert len(fingerprint(API_KEY)) == len("sha256:") + 12


def test_public_jwk_matches_the_key(pkcs8_pem: str) -> None:
    key = parse_key(pkcs8_pem)
    assert isinstance(key, SigningKey)
    jwk = key.public_jwk("kid_test")
    assert jwk["kid"] == "kid_test"
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4)), "big")
    assert n == public_numbers(key).n
    assert key.public_pem().startswith("-----BEGIN PUBLIC KEY-----")
