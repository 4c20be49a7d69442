"""Both key modes and every key form against the real gateway over HTTP."""

import base64
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from behest_chat.behest import BehestClient, ChatStream, errors
from tests.fixtures.gateway import RunningGateway

ECHO = [{"role": "user", "content": "echo: Hello, *Behest* — ünïcode ✓"}]
ECHO_TEXT = "Hello, *Behest* — ünïcode ✓"
TIMEOUT = httpx.Timeout(10.0, connect=2.0)


@pytest.fixture
def gw(gateway: RunningGateway) -> RunningGateway:
    gateway.reset()
    return gateway


def pkcs1(pem: str) -> str:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def key_forms(pem: str) -> dict[str, str]:
    b64 = base64.b64encode(pem.encode()).decode()
    return {
        "behest_pk_ + raw PEM": "behest_pk_" + pem,
        "behest_pk_ + base64 PEM": "behest_pk_" + b64,
        "bare base64 PEM": b64,
    }


SIGNING_FORMS = [
    (pem_format, form)
    for pem_format in ("pkcs8", "pkcs1")
    for form in ("behest_pk_ + raw PEM", "behest_pk_ + base64 PEM", "bare base64 PEM")
]


@pytest.fixture
async def api_client(gw: RunningGateway) -> AsyncIterator[BehestClient]:
    async with BehestClient(key=gw.api_key, base_url=gw.base_url, timeout=TIMEOUT) as client:
        yield client


async def collect(stream: ChatStream) -> tuple[str, list[dict]]:
    chunks = []
    async with stream:
        async for chunk in stream:
            chunks.append(chunk)
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    return text, chunks


async def test_api_key_mode_mints_remotely(api_client: BehestClient, gw: RunningGateway) -> None:
    assert api_client.mode == "api_key"
    token = await api_client.mint("alice", tier="pro", ttl=600, session_id="conv-1")
    assert gw.stats()["mints"] == 1
    bundle = token.to_json()
    assert set(bundle) == {"token", "ttl", "sessionId", "expiresAt"}
    assert (bundle["ttl"], bundle["sessionId"]) == (600, "conv-1")
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert (claims["uid"], claims["tier"], claims["sid"]) == ("alice", 2, "conv-1")
    # expiresAt is counted from when the request left, so it never exceeds the real exp.
    assert claims["exp"] - 2 <= bundle["expiresAt"] <= claims["exp"]


async def test_api_key_mode_streams_the_exact_answer(
    api_client: BehestClient, gw: RunningGateway
) -> None:
    stream = await api_client.chat.completions.create(
        messages=ECHO, stream=True, user_id="alice", tier=1
    )
    assert stream.trace_id
    text, chunks = await collect(stream)
    assert text == ECHO_TEXT
    assert stream.done and stream.closed
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    stats = gw.stats()
    assert (stats["mints"], stats["chat_requests"], stats["streams_completed"]) == (1, 1, 1)


@pytest.mark.parametrize(("pem_format", "form"), SIGNING_FORMS)
async def test_sign_mode_every_key_form_is_accepted_by_the_gateway(
    gw: RunningGateway, pem_format: str, form: str
) -> None:
    pem = gw.signing_key_pem if pem_format == "pkcs8" else pkcs1(gw.signing_key_pem)
    async with BehestClient(
        key=key_forms(pem)[form],
        base_url=gw.base_url,
        kid=gw.kid,
        tenant_id=gw.tenant_id,
        project_id=gw.project_id,
        timeout=TIMEOUT,
    ) as client:
        assert client.mode == "sign"
        stream = await client.chat.completions.create(
            messages=ECHO, stream=True, user_id="bob", tier="max"
        )
        text, _ = await collect(stream)
    assert text == ECHO_TEXT
    stats = gw.stats()
    assert stats["mints"] == 0  # signed locally, never minted by the gateway
    assert stats["chat_requests"] == 1


async def test_sign_mode_with_the_wrong_kid_is_an_authentication_error(gw: RunningGateway) -> None:
    async with BehestClient(
        key="behest_pk_" + gw.signing_key_pem,
        base_url=gw.base_url,
        kid="kid_unknown",
        tenant_id=gw.tenant_id,
        project_id=gw.project_id,
        timeout=TIMEOUT,
    ) as client:
        with pytest.raises(errors.AuthenticationError) as caught:
            await client.chat.completions.create(messages=ECHO, stream=True, user_id="bob")
    assert caught.value.status == 401
    assert caught.value.code == "invalid_token"
    assert caught.value.trace_id
    # One retry with a freshly signed token, which the gateway refuses again.
    assert gw.stats()["chat_requests"] == 2


async def test_wrong_api_key_is_an_authentication_error_on_mint(gw: RunningGateway) -> None:
    wrong = "behest_sk_live_" + "0" * 32
    async with BehestClient(key=wrong, base_url=gw.base_url, timeout=TIMEOUT) as client:
        with pytest.raises(errors.AuthenticationError) as caught:
            await client.mint("alice", tier=1)
    assert caught.value.status == 401
    assert wrong not in str(caught.value)
    assert gw.stats()["mints"] == 0


async def test_non_streaming_completion(api_client: BehestClient) -> None:
    response = await api_client.chat.completions.create(
        messages=ECHO, stream=False, user_id="alice", tier=1
    )
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"]["content"] == ECHO_TEXT
    assert response["usage"]["completion_tokens"] > 0


async def test_usage_chunk_and_max_tokens_pass_through(api_client: BehestClient) -> None:
    stream = await api_client.chat.completions.create(
        messages=[{"role": "user", "content": "long: 50"}],
        stream=True,
        user_id="alice",
        tier=1,
        max_tokens=5,
        stream_options={"include_usage": True},
        model="default",
    )
    _, chunks = await collect(stream)
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["choices"] == []
    assert usage_chunks[0]["usage"]["completion_tokens"] == 5


async def test_session_and_thread_headers_reach_the_gateway(
    api_client: BehestClient, gw: RunningGateway
) -> None:
    stream = await api_client.chat.completions.create(
        messages=ECHO,
        stream=True,
        user_id="carol",
        tier=1,
        session_id="conv-42",
        thread_id="thread-7",
    )
    assert stream.session_id == "conv-42"
    await collect(stream)
    usage = gw.stats()["usage"]
    assert [(u["uid"], u["session_id"]) for u in usage] == [("carol", "conv-42")]
    token = await api_client.token_for("carol", 1)
    threads = httpx.get(
        gw.base_url + "/v1/threads", headers={"Authorization": f"Bearer {token.token}"}
    ).json()
    assert [t["id"] for t in threads] == ["thread-7"]


async def test_each_call_without_session_gets_its_own_uuid(
    api_client: BehestClient, gw: RunningGateway
) -> None:
    sessions = []
    for _ in range(2):
        stream = await api_client.chat.completions.create(
            messages=ECHO, stream=True, user_id="dave", tier=1
        )
        sessions.append(stream.session_id)
        await collect(stream)
    assert sessions[0] != sessions[1]
    assert all(len(s) == 36 for s in sessions)
    assert {u["session_id"] for u in gw.stats()["usage"]} == set(sessions)


async def test_gateway_validation_error_is_a_bad_request(api_client: BehestClient) -> None:
    with pytest.raises(errors.BadRequestError) as caught:
        await api_client.chat.completions.create(
            messages=ECHO, stream=True, user_id="alice", model="gpt-nonexistent"
        )
    assert caught.value.status == 400
    assert caught.value.code == "validation_error"
    assert "model" in caught.value.message


async def test_reserved_user_is_refused_before_the_gateway_sees_it(
    api_client: BehestClient, gw: RunningGateway
) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        await api_client.mint("dashboard-service", tier=1)
    await api_client.mint("alice", tier=1)
    assert gw.stats()["requests_by_path"]["/v1/auth/mint"] == 1
