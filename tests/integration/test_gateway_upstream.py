"""Relaying to an OpenAI-compatible upstream; the upstream here is another real gateway."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fixtures.gateway import RunningGateway, bearer, sse_data, start_gateway

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def relay(
    gateway: RunningGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway whose model is the shared gateway (offline model behind it)."""
    upstream_key = gateway.mint("relay-service", ttl=86_400, tier="max")
    running = start_gateway(
        tmp_path_factory.mktemp("relay"),
        {
            "BEHEST_GATEWAY_UPSTREAM_URL": gateway.base_url + "/v1",
            "BEHEST_GATEWAY_UPSTREAM_KEY": upstream_key,
            "BEHEST_GATEWAY_UPSTREAM_MODEL": "behest-offline",
        },
    )
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def no_leftover_faults(gateway: RunningGateway) -> Iterator[None]:
    gateway.clear_faults()
    yield
    gateway.clear_faults()


def _body(content: str, *, stream: bool = True, usage: bool = False) -> dict[str, object]:
    body: dict[str, object] = {"messages": [{"role": "user", "content": content}], "stream": stream}
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def test_stream_is_relayed_chunk_by_chunk(gateway: RunningGateway, relay: RunningGateway) -> None:
    before = gateway.stats()["chat_requests"]
    token = relay.mint("end-user")
    response = httpx.post(
        relay.base_url + CHAT,
        json=_body("echo: relayed *markdown*", usage=True),
        headers=bearer(token),
    )
    assert response.status_code == 200
    assert b"\r" not in response.content
    payloads = sse_data(response.content)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "relayed *markdown*"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert gateway.stats()["chat_requests"] == before + 1
    # The relay accounts usage for its own user, from the upstream's usage chunk.
    billing = httpx.get(relay.base_url + "/v1/billing/usage", headers=bearer(token)).json()
    assert billing["platform"]["output_tokens"] == 4
    models = httpx.get(relay.base_url + "/v1/models", headers=bearer(token)).json()
    assert models["data"][0]["id"] == "behest-offline"


def test_non_streaming_is_relayed(relay: RunningGateway) -> None:
    token = relay.mint("end-user")
    response = httpx.post(
        relay.base_url + CHAT, json=_body("echo: whole answer", stream=False), headers=bearer(token)
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "whole answer"


def test_usage_chunk_is_added_when_the_upstream_sends_none(
    relay: RunningGateway, gateway: RunningGateway
) -> None:
    gateway.set_fault(error_event_after=99)  # streaming-only plan with no effect on a short answer
    token = relay.mint("end-user")
    response = httpx.post(
        relay.base_url + CHAT, json=_body("echo: short", usage=True), headers=bearer(token)
    )
    chunks = [json.loads(p) for p in sse_data(response.content)[:-1]]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 1


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"status": 500}, 502, "server_error"),
        ({"status": 400, "message": "bad things"}, 400, "validation_error"),
        ({"status": 401}, 502, "server_error"),
    ],
)
def test_upstream_errors_before_streaming_map_to_the_envelope(
    relay: RunningGateway, gateway: RunningGateway, fault: dict[str, object], status: int, code: str
) -> None:
    gateway.set_fault(**fault)
    token = relay.mint("end-user")
    response = httpx.post(relay.base_url + CHAT, json=_body("echo: x"), headers=bearer(token))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert "eyJ" not in response.text  # the upstream key never leaks into errors


def test_upstream_rate_limit_passes_retry_after(
    relay: RunningGateway, gateway: RunningGateway
) -> None:
    gateway.set_fault(status=429, retry_after=4)
    response = httpx.post(
        relay.base_url + CHAT, json=_body("echo: x", stream=False), headers=bearer(relay.mint("u"))
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"


def test_upstream_stream_breaking_becomes_an_in_band_error(
    relay: RunningGateway, gateway: RunningGateway
) -> None:
    gateway.set_fault(cut_after=2)
    response = httpx.post(
        relay.base_url + CHAT, json=_body("echo: a b c d e f"), headers=bearer(relay.mint("u"))
    )
    payloads = sse_data(response.content)
    assert len(payloads) == 3
    assert json.loads(payloads[-1])["error"]["code"] == "server_error"


def test_unreachable_upstream_is_502(gateway_factory: Callable[..., RunningGateway]) -> None:
    gw = gateway_factory(
        {
            "BEHEST_GATEWAY_UPSTREAM_URL": "http://127.0.0.1:9/v1",
            "BEHEST_GATEWAY_UPSTREAM_MODEL": "m",
        }
    )
    response = httpx.post(gw.base_url + CHAT, json=_body("hi"), headers=bearer(gw.mint()))
    assert response.status_code == 502
    assert "unreachable" in response.json()["error"]["message"]


def test_client_disconnect_cancels_the_upstream_request(
    relay: RunningGateway, gateway: RunningGateway
) -> None:
    before = gateway.stats()["client_disconnects"]
    relay_before = relay.stats()["client_disconnects"]
    gateway.set_fault(token_delay_ms=50)
    token = relay.mint("end-user")
    with (
        httpx.Client() as client,
        client.stream(
            "POST", relay.base_url + CHAT, json=_body("long: 1000"), headers=bearer(token)
        ) as response,
    ):
        buffer = b""
        for piece in response.iter_raw():
            buffer += piece
            if buffer.count(b"\n\n") >= 3:
                break
    relay.wait_for_stats(lambda s: s["client_disconnects"] == relay_before + 1)
    upstream = gateway.wait_for_stats(lambda s: s["client_disconnects"] == before + 1, timeout=1.0)
    assert upstream["streams_open"] == 0
