"""BehestClient construction and argument checks; nothing here reaches a network."""

import base64
import time

import jwt
import pytest

from behest_chat.behest import BehestClient, errors
from behest_chat.behest.keys import generate_signing_key_pem

API_KEY = "behest_sk_live_" + "a1b2c3d4" * 4
# Port 9 on loopback: nothing listens, so any accidental request would fail loudly.
UNUSED_URL = "http://127.0.0.1:9"
SIGN_IDS = {"kid": "kid_test", "tenant_id": "tnt_1", "project_id": "proj_1"}


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_signing_key_pem()


async def test_api_key_selects_api_key_mode() -> None:
    async with BehestClient(key=API_KEY, base_url=UNUSED_URL + "/") as client:
        assert client.mode == "api_key"
        assert client.base_url == UNUSED_URL
        assert API_KEY not in repr(client)
        assert "sha256:" in repr(client)


@pytest.mark.parametrize("form", ["prefixed_raw", "prefixed_b64", "bare_b64"])
async def test_signing_key_forms_select_sign_mode(pem: str, form: str) -> None:
    encoded = base64.b64encode(pem.encode()).decode()
    key = {
        "prefixed_raw": "behest_pk_" + pem,
        "prefixed_b64": "behest_pk_" + encoded,
        "bare_b64": encoded,
    }[form]
    async with BehestClient(key=key, base_url=UNUSED_URL, **SIGN_IDS) as client:
        assert client.mode == "sign"
        assert "PRIVATE" not in repr(client)


@pytest.mark.parametrize("missing", ["kid", "tenant_id", "project_id"])
def test_sign_mode_requires_each_id(pem: str, missing: str) -> None:
    variable = {
        "kid": "BEHEST_KID",
        "tenant_id": "BEHEST_TENANT_ID",
        "project_id": "BEHEST_PROJECT_ID",
    }[missing]
    ids = {**SIGN_IDS, missing: "  "}
    with pytest.raises(errors.BehestConfigError) as caught:
        BehestClient(key="behest_pk_" + pem, base_url=UNUSED_URL, **ids)
    assert str(caught.value).startswith(f"{variable}: required")
    assert caught.value.code == "missing_env"


@pytest.mark.parametrize(
    "key", ["", "nope", "behest_sk_test_" + "a" * 32, "behest_pk_garbage!!", "sk-" + "z" * 40]
)
def test_bad_keys_fail_in_one_line_without_echo(key: str) -> None:
    with pytest.raises(errors.BehestConfigError) as caught:
        BehestClient(key=key, base_url=UNUSED_URL)
    message = str(caught.value)
    assert message.startswith("BEHEST_KEY: ")
    assert "\n" not in message
    if key:
        assert key not in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (None, "missing"),
        ("", "missing"),
        ("api.behest.app", "http:// or https://"),
        ("ftp://host", "http:// or https://"),
        ("http://", "http:// or https://"),
        ("https://user:" + "p" * 8 + "@host", "user name or password"),
        ("https://host/?x=1", "query or fragment"),
    ],
)
def test_bad_base_urls(base_url: object, expected: str) -> None:
    with pytest.raises(errors.BehestConfigError) as caught:
        BehestClient(key=API_KEY, base_url=base_url)  # type: ignore[arg-type]
    assert str(caught.value).startswith("BEHEST_BASE_URL: ")
    assert expected in str(caught.value)
    assert "pppppppp" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"default_ttl": 30}, "ttl"),
        ({"cache_size": 0}, "cache_size"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_tuning_values(kwargs: dict, expected: str) -> None:
    with pytest.raises(errors.BehestConfigError, match=expected):
        BehestClient(key=API_KEY, base_url=UNUSED_URL, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user_id": "admin"}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u", "tier": 7}, "tier"),
        ({"user_id": "u", "ttl": 30}, "ttl"),
        ({"user_id": "u", "ttl": 100_000}, "ttl"),
        ({"user_id": "u", "session_id": "bad\nid"}, "session_id"),
    ],
)
async def test_mint_arguments_are_checked_before_any_network_call(kwargs: dict, field: str) -> None:
    # In api_key mode a mint would go to UNUSED_URL and fail with ConnectError; the argument
    # error proves that no request was attempted.
    async with BehestClient(key=API_KEY, base_url=UNUSED_URL, max_retries=0) as client:
        with pytest.raises(errors.InvalidArgumentError) as caught:
            await client.mint(**kwargs)
        assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"content": "no role"}]}, "messages[0]"),
        ({"thread_id": ""}, "thread_id"),
        ({"thread_id": "t\r\nX-Evil: 1"}, "thread_id"),
        ({"user_id": "system"}, "user_id"),
        ({"tier": "gold"}, "tier"),
    ],
)
async def test_chat_arguments_are_checked_before_any_network_call(kwargs: dict, field: str) -> None:
    call = {"messages": [{"role": "user", "content": "hi"}], "user_id": "u", **kwargs}
    async with BehestClient(key=API_KEY, base_url=UNUSED_URL, max_retries=0) as client:
        with pytest.raises(errors.InvalidArgumentError) as caught:
            await client.chat.completions.create(stream=True, **call)
        assert str(caught.value).startswith(f"{field}: ")


async def test_unreachable_gateway_is_a_connect_error() -> None:
    async with BehestClient(
        key=API_KEY, base_url=UNUSED_URL, max_retries=1, retry_backoff=0.01
    ) as client:
        with pytest.raises(errors.ConnectError) as caught:
            await client.mint("alice", tier=1)
    assert "127.0.0.1:9" in str(caught.value)
    assert API_KEY not in str(caught.value)


async def test_sign_mode_mints_without_network(pem: str) -> None:
    async with BehestClient(
        key="behest_pk_" + pem,
        base_url=UNUSED_URL,
        issuer="https://iss",
        audience="aud",
        **SIGN_IDS,
    ) as client:
        token = await client.mint("alice", tier="max", ttl=120, session_id="conv-1")
        claims = jwt.decode(token.token, options={"verify_signature": False})
        assert (claims["uid"], claims["tier"], claims["sid"]) == ("alice", 3, "conv-1")
        assert (claims["iss"], claims["aud"], claims["tid"], claims["pid"]) == (
            "https://iss",
            "aud",
            "tnt_1",
            "proj_1",
        )
        assert token.to_json()["expiresAt"] == claims["exp"]
        assert token.to_json()["ttl"] == 120


async def test_sign_mode_mint_always_mints_and_token_for_caches(pem: str) -> None:
    async with BehestClient(key="behest_pk_" + pem, base_url=UNUSED_URL, **SIGN_IDS) as client:
        first = await client.mint("alice", tier=1)
        second = await client.mint("alice", tier=1)
        assert first.token != second.token
        assert first.session_id != second.session_id
        cached = await client.token_for("alice", tier="free")
        assert await client.token_for("alice", tier=1) is cached
        assert await client.token_for("alice", tier=2) is not cached
        assert client.invalidate("alice") is True
        assert await client.token_for("alice", tier=2) is not cached


async def test_injected_clock_drives_refresh(pem: str) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with BehestClient(
        key="behest_pk_" + pem, base_url=UNUSED_URL, clock=clock, default_ttl=900, **SIGN_IDS
    ) as client:
        first = await client.token_for("alice", 1)
        offset[0] = 900 - 70  # about 70 s left: still served from the cache
        assert await client.token_for("alice", 1) is first
        offset[0] = 900 - 60  # at most 60 s left: minted again
        second = await client.token_for("alice", 1)
        assert second is not first
        offset[0] = 0
        assert await client.token_for("alice", 1) is second
