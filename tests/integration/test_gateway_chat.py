"""Chat completions, models, threads and usage of the local gateway, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway import RunningGateway, bearer, sse_data


def _chat(
    gateway: RunningGateway, token: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers={**bearer(token), **headers},
        timeout=10,
    )


def _user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


@pytest.fixture
def token(gateway: RunningGateway) -> str:
    return gateway.mint("chat-user")


def test_stream_is_lf_framed_with_role_content_finish_usage_and_done(
    gateway: RunningGateway, token: str
) -> None:
    text = "<b>bold</b> and `code`\n\n```python\nprint('hi')\n```\n"
    response = _chat(
        gateway,
        token,
        {
            "messages": _user("echo: " + text),
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-trace-id"].startswith("tr_")
    raw = response.content
    assert b"\r" not in raw
    assert raw.endswith(b"data: [DONE]\n\n")
    assert all(event.startswith(b"data: ") for event in raw.split(b"\n\n") if event)
    payloads = sse_data(raw)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content_chunks = chunks[1:-2]
    assert "".join(c["choices"][0]["delta"]["content"] for c in content_chunks) == text
    assert all(c["choices"][0]["finish_reason"] is None for c in content_chunks)
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["delta"] == {}
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == len(content_chunks)
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + len(content_chunks)


def test_stream_without_include_usage_has_no_usage_chunk(
    gateway: RunningGateway, token: str
) -> None:
    response = _chat(gateway, token, {"messages": _user("echo: hi there"), "stream": True})
    chunks = [json.loads(p) for p in sse_data(response.content)[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_answers_are_deterministic_markdown_and_match_between_modes(
    gateway: RunningGateway, token: str
) -> None:
    body = {"messages": _user("How do I read a file in Python?")}
    first = _chat(gateway, token, body).json()
    second = _chat(gateway, token, body).json()
    text = first["choices"][0]["message"]["content"]
    assert text == second["choices"][0]["message"]["content"]
    assert text.startswith("## ")
    assert "\n- " in text and "```python\n" in text
    assert 60 <= first["usage"]["completion_tokens"] <= 120
    streamed = _chat(gateway, token, {**body, "stream": True})
    chunks = [json.loads(p) for p in sse_data(streamed.content)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text
    other = _chat(gateway, token, {"messages": _user("Something else entirely")}).json()
    assert other["choices"][0]["message"]["content"] != text


def test_non_streaming_completion_shape(gateway: RunningGateway, token: str) -> None:
    response = _chat(gateway, token, {"messages": _user("echo: plain answer")})
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "behest-offline"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "plain answer"},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["completion_tokens"] == 2
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 2


@pytest.mark.parametrize("model", [None, "", "default", "behest-offline"])
def test_default_model_names_are_accepted(
    gateway: RunningGateway, token: str, model: str | None
) -> None:
    body: dict[str, Any] = {"messages": _user("echo: ok")}
    if model is not None:
        body["model"] = model
    response = _chat(gateway, token, body)
    assert response.status_code == 200
    assert response.json()["model"] == "behest-offline"


def test_max_tokens_truncates_with_length(gateway: RunningGateway, token: str) -> None:
    response = _chat(
        gateway, token, {"messages": _user("long: 50"), "stream": True, "max_tokens": 5}
    )
    chunks = [json.loads(p) for p in sse_data(response.content)[:-1]]
    assert len(chunks) == 1 + 5 + 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    plain = _chat(gateway, token, {"messages": _user("long: 50"), "max_tokens": 5}).json()
    assert plain["choices"][0]["finish_reason"] == "length"
    assert plain["usage"]["completion_tokens"] == 5


def test_long_directive_gives_exactly_n_tokens(gateway: RunningGateway, token: str) -> None:
    body = _chat(gateway, token, {"messages": _user("long: 300")}).json()
    assert body["usage"]["completion_tokens"] == 300
    assert "```python" in body["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"messages": _user("x"), "model": "gpt-imaginary"}, "model"),
        ({"messages": _user("x"), "stream": "yes"}, "stream"),
        ({"messages": _user("x"), "max_tokens": 0}, "max_tokens"),
        ({"messages": _user("x"), "stream_options": "usage"}, "stream_options"),
    ],
)
def test_bad_chat_bodies_are_400(
    gateway: RunningGateway, token: str, body: dict[str, Any], field: str
) -> None:
    response = _chat(gateway, token, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"]


def test_malformed_json_is_400(gateway: RunningGateway, token: str) -> None:
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions", content=b'{"messages": [', headers=bearer(token)
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "request body is not valid JSON",
    }


def test_body_over_one_mebibyte_is_413(gateway: RunningGateway, token: str) -> None:
    big = {"messages": _user("x" * (1024 * 1024 + 10))}
    response = _chat(gateway, token, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.headers["x-trace-id"].startswith("tr_")


def test_unknown_routes_and_methods_use_the_envelope(gateway: RunningGateway) -> None:
    missing = httpx.get(gateway.base_url + "/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert missing.headers["x-trace-id"].startswith("tr_")
    wrong = httpx.get(gateway.base_url + "/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["x-trace-id"] != missing.headers["x-trace-id"]


def test_models_lists_the_served_model(gateway: RunningGateway, token: str) -> None:
    response = httpx.get(gateway.base_url + "/v1/models", headers=bearer(token))
    assert response.json() == {
        "object": "list",
        "data": [{"id": "behest-offline", "object": "model", "created": 0, "owned_by": "behest"}],
    }
    assert httpx.get(gateway.base_url + "/v1/models").status_code == 401


def test_threads_are_created_stored_and_scoped_to_the_user(gateway: RunningGateway) -> None:
    gateway.reset()
    owner, stranger = gateway.mint("thread-owner"), gateway.mint("thread-stranger")
    thread_headers = {"X-Thread-Id": "trip-planning"}
    _chat(gateway, owner, {"messages": _user("echo: first reply")}, **thread_headers)
    _chat(
        gateway, owner, {"messages": _user("echo: second reply"), "stream": True}, **thread_headers
    )

    listed = httpx.get(gateway.base_url + "/v1/threads", headers=bearer(owner)).json()
    assert [t["id"] for t in listed] == ["trip-planning"]
    assert listed[0]["title"] == "echo: first reply"
    assert listed[0]["message_count"] == 4
    assert listed[0]["last_message_at"].endswith("Z")
    messages = httpx.get(
        gateway.base_url + "/v1/threads/trip-planning/messages", headers=bearer(owner)
    ).json()
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "echo: first reply"),
        ("assistant", "first reply"),
        ("user", "echo: second reply"),
        ("assistant", "second reply"),
    ]
    one = httpx.get(gateway.base_url + "/v1/threads/trip-planning", headers=bearer(owner)).json()
    assert one["id"] == "trip-planning"

    assert httpx.get(gateway.base_url + "/v1/threads", headers=bearer(stranger)).json() == []
    for path in ("/v1/threads/trip-planning", "/v1/threads/trip-planning/messages"):
        hidden = httpx.get(gateway.base_url + path, headers=bearer(stranger))
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "not_found"
    assert (
        httpx.delete(
            gateway.base_url + "/v1/threads/trip-planning", headers=bearer(stranger)
        ).status_code
        == 404
    )

    deleted = httpx.delete(gateway.base_url + "/v1/threads/trip-planning", headers=bearer(owner))
    assert deleted.status_code == 204 and deleted.content == b""
    assert (
        httpx.get(gateway.base_url + "/v1/threads/trip-planning", headers=bearer(owner)).status_code
        == 404
    )


def test_bad_thread_id_header_is_400(gateway: RunningGateway, token: str) -> None:
    response = _chat(
        gateway, token, {"messages": _user("echo: x")}, **{"X-Thread-Id": "bad id with spaces"}
    )
    assert response.status_code == 400
    assert "x-thread-id" in response.json()["error"]["message"]


def test_usage_per_user_and_session_in_both_shapes(gateway: RunningGateway) -> None:
    gateway.reset()
    token = gateway.mint("usage-user", session_id="token-session")
    first = _chat(
        gateway, token, {"messages": _user("echo: one two three")}, **{"X-Session-Id": "s-a"}
    ).json()
    _chat(
        gateway,
        token,
        {"messages": _user("echo: four")},
        **{"X-Session-Id": "s-b", "X-End-User-Id": "someone"},
    )
    _chat(gateway, token, {"messages": _user("echo: five")})
    _chat(gateway, gateway.mint("other-user"), {"messages": _user("echo: not mine")})

    billing = httpx.get(gateway.base_url + "/v1/billing/usage", headers=bearer(token)).json()
    assert billing["user_id"] == "usage-user"
    assert billing["project_id"] == gateway.project_id
    assert billing["platform"]["requests"] == 3
    assert billing["platform"]["output_tokens"] == 3 + 1 + 1
    assert billing["platform"]["by_model"] == [
        {"model": "behest-offline", "requests": 3, "cost_usd": 0.0}
    ]
    assert billing["byok"]["requests"] == 0
    sessions = {s["session_id"]: s for s in billing["by_session"]}
    assert set(sessions) == {"s-a", "s-b", "token-session"}
    assert sessions["s-a"]["input_tokens"] == first["usage"]["prompt_tokens"]
    assert billing["window"]["from"].endswith("T00:00:00Z")

    only_a = httpx.get(
        gateway.base_url + "/v1/billing/usage", params={"session_id": "s-a"}, headers=bearer(token)
    ).json()
    assert only_a["platform"]["requests"] == 1
    assert only_a["session_id"] == "s-a"

    sdk = httpx.get(
        gateway.base_url + "/v1/usage",
        params={"granularity": "hour", "user_id": "usage-user"},
        headers=bearer(token),
    ).json()
    assert sdk["totals"]["requests"] == 3
    assert (
        sdk["totals"]["tokens"]
        == billing["platform"]["input_tokens"] + billing["platform"]["output_tokens"]
    )
    assert sum(b["tokens"] for b in sdk["breakdown"]) == sdk["totals"]["tokens"]
    assert all(b["timestamp"].endswith(":00:00Z") for b in sdk["breakdown"])

    stats_usage = [u for u in gateway.stats()["usage"] if u["uid"] == "usage-user"]
    assert {u["session_id"] for u in stats_usage} == {"s-a", "s-b", "token-session"}


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/usage", {"user_id": "somebody-else"}, 403),
        ("/v1/usage", {"granularity": "week"}, 400),
        ("/v1/usage", {"from": "yesterday"}, 400),
        ("/v1/billing/usage", {"from": "2026-13-01"}, 400),
        ("/v1/billing/usage", {"from": "2026-05-02", "to": "2026-05-01"}, 400),
    ],
)
def test_usage_query_errors(
    gateway: RunningGateway, token: str, path: str, params: dict[str, str], status: int
) -> None:
    response = httpx.get(gateway.base_url + path, params=params, headers=bearer(token))
    assert response.status_code == status
    assert "error" in response.json()


def test_usage_window_dates_exclude_other_days(gateway: RunningGateway, token: str) -> None:
    _chat(gateway, token, {"messages": _user("echo: today")})
    past = httpx.get(
        gateway.base_url + "/v1/billing/usage",
        params={"from": "2020-01-01", "to": "2020-01-31"},
        headers=bearer(token),
    ).json()
    assert past["platform"]["requests"] == 0
    assert past["window"] == {"from": "2020-01-01T00:00:00Z", "to": "2020-01-31T23:59:59Z"}
