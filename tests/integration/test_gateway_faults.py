"""Every fault of the gateway's fault switch, and client disconnects, over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.fixtures.gateway import RunningGateway, bearer, sse_data

CHAT = "/v1/chat/completions"


@pytest.fixture
def token(gateway: RunningGateway) -> Iterator[str]:
    gateway.clear_faults()
    yield gateway.mint("fault-user")
    gateway.clear_faults()


def _body(
    content: str = "echo: one two three four five six", stream: bool = True
) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "stream": stream}


def _read_events(response: httpx.Response) -> Iterator[str]:
    buffer = b""
    for piece in response.iter_raw():
        buffer += piece
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            yield event.decode().removeprefix("data: ")


def test_status_fault_fails_the_next_n_requests_with_the_envelope(
    gateway: RunningGateway, token: str
) -> None:
    gateway.set_fault(status=500, code="server_error", message="boom", count=2)
    for _ in range(2):
        failed = httpx.post(
            gateway.base_url + CHAT, json=_body(stream=False), headers=bearer(token)
        )
        assert failed.status_code == 500
        assert failed.json() == {"error": {"code": "server_error", "message": "boom"}}
        assert failed.headers["x-trace-id"].startswith("tr_")
    assert (
        httpx.post(
            gateway.base_url + CHAT, json=_body(stream=False), headers=bearer(token)
        ).status_code
        == 200
    )


def test_status_fault_on_a_stream_is_a_plain_json_error(
    gateway: RunningGateway, token: str
) -> None:
    gateway.set_fault(status=429, retry_after=7, details={"why": "test"})
    response = httpx.post(gateway.base_url + CHAT, json=_body(), headers=bearer(token))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == {
        "code": "rate_limited",
        "message": "injected fault: HTTP 429",
        "details": {"why": "test"},
    }


@pytest.mark.parametrize("path", ["/v1/auth/mint", "/auth/v1/auth/mint"])
def test_mint_faults(gateway: RunningGateway, token: str, path: str) -> None:
    gateway.set_fault(status=503, path="/v1/auth/mint")
    response = httpx.post(
        gateway.base_url + path, json={"user_id": "a"}, headers=bearer(gateway.api_key)
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "server_error"
    gateway.set_fault(stall_ms=300, path="/v1/auth/mint")
    started = time.monotonic()
    slow = httpx.post(
        gateway.base_url + path, json={"user_id": "a"}, headers=bearer(gateway.api_key)
    )
    assert slow.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_stall_holds_back_the_first_byte(gateway: RunningGateway, token: str) -> None:
    gateway.set_fault(stall_ms=500, count=2)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway.base_url + CHAT,
            json=_body(),
            headers=bearer(token),
            timeout=httpx.Timeout(5, read=0.2),
        )
    started = time.monotonic()
    with httpx.stream(
        "POST", gateway.base_url + CHAT, json=_body(), headers=bearer(token)
    ) as response:
        headers_after = time.monotonic() - started
        payloads = sse_data(response.read())
    assert headers_after >= 0.5
    assert payloads[-1] == "[DONE]"
    started = time.monotonic()
    httpx.post(gateway.base_url + CHAT, json=_body(), headers=bearer(token))
    assert time.monotonic() - started < 0.5  # the plan was used up


def test_cut_after_drops_the_connection_mid_stream(gateway: RunningGateway, token: str) -> None:
    before = gateway.stats()["streams_cut"]
    gateway.set_fault(cut_after=3)
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST", gateway.base_url + CHAT, json=_body(), headers=bearer(token)
        ) as response,
    ):
        assert response.status_code == 200
        received.extend(_read_events(response))
    assert len(received) == 3
    assert "[DONE]" not in received
    assert all(json.loads(event)["choices"][0]["finish_reason"] is None for event in received)
    assert gateway.stats()["streams_cut"] == before + 1
    assert any(" cut trace=" in line for line in gateway.log_text().splitlines())


def test_malformed_frame_after_k_frames(gateway: RunningGateway, token: str) -> None:
    gateway.set_fault(malformed_after=2)
    response = httpx.post(gateway.base_url + CHAT, json=_body(), headers=bearer(token))
    payloads = sse_data(response.content)
    json.loads(payloads[0]), json.loads(payloads[1])
    with pytest.raises(json.JSONDecodeError):
        json.loads(payloads[2])
    assert payloads[-1] == "[DONE]"
    assert all(isinstance(json.loads(p), dict) for p in payloads[3:-1])


def test_error_event_after_k_frames_ends_without_done(gateway: RunningGateway, token: str) -> None:
    gateway.set_fault(error_event_after=2, message="model overloaded")
    response = httpx.post(gateway.base_url + CHAT, json=_body(), headers=bearer(token))
    assert response.status_code == 200
    payloads = sse_data(response.content)
    assert len(payloads) == 3
    assert json.loads(payloads[2]) == {
        "error": {"code": "server_error", "message": "model overloaded"}
    }


def test_token_delay_slows_one_request(gateway: RunningGateway, token: str) -> None:
    gateway.set_fault(token_delay_ms=100)
    started = time.monotonic()
    slow = httpx.post(gateway.base_url + CHAT, json=_body("echo: a b c d e"), headers=bearer(token))
    assert time.monotonic() - started >= 0.5
    assert (
        "".join(
            json.loads(p)["choices"][0]["delta"].get("content", "")
            for p in sse_data(slow.content)[:-1]
        )
        == "a b c d e"
    )
    started = time.monotonic()
    httpx.post(gateway.base_url + CHAT, json=_body("echo: a b c d e"), headers=bearer(token))
    assert time.monotonic() - started < 0.4


def test_streaming_faults_wait_for_a_streaming_request(gateway: RunningGateway, token: str) -> None:
    gateway.set_fault(error_event_after=1)
    plain = httpx.post(gateway.base_url + CHAT, json=_body(stream=False), headers=bearer(token))
    assert plain.status_code == 200
    assert len(gateway.stats()["faults_pending"]) == 1
    streamed = sse_data(
        httpx.post(gateway.base_url + CHAT, json=_body(), headers=bearer(token)).content
    )
    assert "error" in json.loads(streamed[-1])
    assert gateway.stats()["faults_pending"] == []


def test_client_disconnect_mid_stream_is_seen_within_one_second(
    gateway: RunningGateway, token: str
) -> None:
    before = gateway.stats()["client_disconnects"]
    gateway.set_fault(token_delay_ms=50)
    with (
        httpx.Client() as client,
        client.stream(
            "POST", gateway.base_url + CHAT, json=_body("long: 1000"), headers=bearer(token)
        ) as response,
    ):
        events = _read_events(response)
        for _ in range(3):
            next(events)
    # Leaving the block closes the half-read response and its connection.
    stats = gateway.wait_for_stats(lambda s: s["client_disconnects"] == before + 1, timeout=1.0)
    assert stats["streams_open"] == 0
    # Usage stops where the stream stopped: counted, but far short of the 1000 tokens asked for.
    session = jwt.decode(token, options={"verify_signature": False})["sid"]
    (usage,) = [u for u in stats["usage"] if u["session_id"] == session]
    assert usage["requests"] == 1
    assert 2 <= usage["completion_tokens"] < 1000  # three frames read: role + two tokens


def test_client_disconnect_during_a_stall_is_seen(gateway: RunningGateway, token: str) -> None:
    before = gateway.stats()["client_disconnects"]
    gateway.set_fault(stall_ms=5000)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway.base_url + CHAT,
            json=_body(),
            headers=bearer(token),
            timeout=httpx.Timeout(5, read=0.1),
        )
    gateway.wait_for_stats(lambda s: s["client_disconnects"] == before + 1, timeout=1.0)


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"status": 200}, "status"),
        ({"status": 500, "cut_after": 1}, "cut_after"),
        ({"cut_after": -1}, "cut_after"),
        ({"count": 0, "status": 500}, "count"),
        ({"path": "/v1/models", "status": 500}, "path"),
        ({"path": "/v1/auth/mint", "cut_after": 1}, "cut_after"),
        ({}, "status"),
    ],
)
def test_bad_fault_plans_are_400(gateway: RunningGateway, plan: dict[str, Any], field: str) -> None:
    response = httpx.post(gateway.base_url + "/_gateway/faults", json=plan)
    assert response.status_code == 400
    assert field in response.json()["error"]["message"]


def test_switch_routes_do_not_exist_when_faults_are_off(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    gw = gateway_factory(faults=False)
    for method, path in [
        ("POST", "/_gateway/faults"),
        ("DELETE", "/_gateway/faults"),
        ("GET", "/_gateway/stats"),
        ("POST", "/_gateway/reset"),
    ]:
        response = httpx.request(method, gw.base_url + path, json={"status": 500})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
