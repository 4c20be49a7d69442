"""Clients written for Behest work against the local gateway unchanged.

Drives the gateway with the ``openai`` Python SDK (base URL + minted JWT as the API key) and
with the published ``behest-ai`` 1.5.0b1 SDK (mint, streaming chat, threads, usage, typed
errors), in both of its key modes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import behest
import openai
import pytest

from tests.fixtures.gateway import RunningGateway

ECHO = "echo: Hello from **Behest**"
EXPECTED = "Hello from **Behest**"


@pytest.fixture
def clean(gateway: RunningGateway) -> Iterator[RunningGateway]:
    gateway.clear_faults()
    yield gateway
    gateway.clear_faults()


def _openai(gateway: RunningGateway, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=token, max_retries=0)


def test_openai_sdk_streams_with_usage(clean: RunningGateway) -> None:
    client = _openai(clean, clean.mint("openai-user"))
    stream = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": ECHO}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_non_streaming_models_and_errors(clean: RunningGateway) -> None:
    client = _openai(clean, clean.mint("openai-user"))
    completion = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": ECHO}]
    )
    assert completion.choices[0].message.content == EXPECTED
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert [m.id for m in client.models.list()] == ["behest-offline"]

    with pytest.raises(openai.AuthenticationError) as rejected:
        _openai(clean, clean.api_key).chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hi"}]
        )
    assert rejected.value.status_code == 401

    clean.set_fault(status=429, retry_after=3)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.response.headers["x-trace-id"].startswith("tr_")


def test_openai_sdk_sees_an_in_band_stream_error(clean: RunningGateway) -> None:
    client = _openai(clean, clean.mint("openai-user"))
    clean.set_fault(error_event_after=2, message="model overloaded")
    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": ECHO}], stream=True
    )
    with pytest.raises(openai.APIError, match="model overloaded"):
        list(stream)


def test_behest_sdk_mints_and_streams_in_api_key_mode(clean: RunningGateway) -> None:
    client = behest.Behest(key=clean.api_key, base_url=clean.base_url)
    assert client.mode == "apiKey"
    minted = client.auth.mint(user_id="sdk-user", tier=2, ttl=900)
    assert minted.token.count(".") == 2
    assert minted.ttl == 900
    claims = behest.decode_token(minted.token)
    assert (claims["uid"], claims["tier"], claims["sid"]) == ("sdk-user", 2, minted.session_id)

    chunks = list(
        client.chat.completions.create(
            messages=[{"role": "user", "content": ECHO}], stream=True, user_id="sdk-user"
        )
    )
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        == EXPECTED
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    plain = client.chat.completions.create(
        messages=[{"role": "user", "content": ECHO}], user_id="sdk-user"
    )
    assert plain["choices"][0]["message"]["content"] == EXPECTED
    # usage.get(user_id=...) only filters; the token (here the one minted above) says whose usage.
    usage = client.usage.get(user_id="sdk-user", token=minted.token)
    assert usage["totals"]["requests"] >= 2
    with pytest.raises(behest.BehestAuthError) as other_user:
        client.usage.get(user_id="sdk-user")  # the SDK mints for "default" here
    assert other_user.value.status == 403
    assert client.threads.list(user_id="sdk-user") == []


def test_behest_sdk_sign_mode_tokens_are_accepted(clean: RunningGateway) -> None:
    for key in (
        "behest_pk_" + clean.signing_key_pem,
        base64.b64encode(clean.signing_key_pem.encode()).decode(),
    ):
        client = behest.Behest(
            key=key,
            kid=clean.kid,
            tenant_id=clean.tenant_id,
            project_id=clean.project_id,
            base_url=clean.base_url,
        )
        assert client.mode == "sign"
        chunks = list(
            client.chat.completions.create(
                messages=[{"role": "user", "content": ECHO}], stream=True, user_id="signer"
            )
        )
        assert (
            "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
            == EXPECTED
        )


def test_behest_sdk_classifies_gateway_errors(clean: RunningGateway) -> None:
    client = behest.Behest(key=clean.api_key, base_url=clean.base_url)
    cases = [
        ({"status": 429, "retry_after": 5}, behest.BehestRateLimitError, "rate_limited"),
        ({"status": 402}, behest.BehestQuotaError, "quota_exceeded"),
        ({"status": 503}, behest.BehestServerError, "server_error"),
    ]
    for plan, error_class, code in cases:
        clean.set_fault(**plan)
        with pytest.raises(error_class) as caught:
            next(
                iter(
                    client.chat.completions.create(
                        messages=[{"role": "user", "content": "hi"}], stream=True
                    )
                )
            )
        assert caught.value.code == code
        assert caught.value.trace_id and caught.value.trace_id.startswith("tr_")
        if plan["status"] == 429:
            assert caught.value.retry_after == 5

    wrong = behest.Behest(key="behest_sk_live_" + "f" * 32, base_url=clean.base_url)
    with pytest.raises(behest.BehestAuthError) as denied:
        wrong.auth.mint(user_id="x")
    assert denied.value.status == 401
