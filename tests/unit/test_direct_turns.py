"""Reading a browser-direct turn: the relay's error classes and sentences, defensive input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from behest_chat.behest import errors
from behest_chat.direct import MAX_TEXT_CHARS, read_direct_turn, run_turn_script
from behest_chat.state.failures import describe_error

DIRECT_JS = Path(__file__).resolve().parents[2] / "assets" / "direct.js"


def turn(**fields):
    return read_direct_turn({"text": "partial", "status": "error", **fields})


@pytest.mark.parametrize(
    ("kind", "status", "code", "expected"),
    [
        ("quota", 402, "quota_exceeded", "quota"),
        ("rate_limited", 429, "rate_limited", "rate_limited"),
        ("auth", 401, "invalid_token", "auth"),
        ("forbidden", 403, "forbidden", "forbidden"),
        ("bad_request", 422, "validation_error", "bad_request"),
        ("server", 503, "server_error", "server"),
        ("unreachable", None, None, "unreachable"),
        ("cut", 200, "stream_cut", "cut"),
        ("cut", 200, "stream_parse_error", "cut"),
        ("cut", 200, "upstream_failed", "cut"),
        ("somethingelse", 418, None, "error"),
    ],
)
def test_each_kind_gets_the_relays_label(kind, status, code, expected) -> None:
    result = turn(kind=kind, httpStatus=status, code=code)
    assert result.status == "error"
    assert result.text == "partial"
    assert result.error is not None
    assert describe_error(result.error)[0] == expected


def test_direct_js_uses_the_relays_sentences() -> None:
    script = DIRECT_JS.read_text()
    for kind in ("quota", "auth", "forbidden", "bad_request", "server", "unreachable", "cut"):
        sentence = describe_error(turn(kind=kind).error)[1]
        assert re.search(rf'{kind}: "{re.escape(sentence)}"', script), kind


def test_retry_after_and_trace_id_are_kept() -> None:
    result = turn(kind="rate_limited", httpStatus=429, retryAfter=7, traceId="tr-1")
    assert isinstance(result.error, errors.RateLimitError)
    assert result.error.retry_after == 7
    assert result.error.trace_id == "tr-1"
    assert describe_error(result.error)[1] == "Too many requests right now. Try again in 7 s."


def test_stream_codes_pick_the_stream_error_class() -> None:
    assert isinstance(turn(kind="cut", code="stream_cut").error, errors.StreamCutError)
    assert isinstance(turn(kind="cut", code="stream_parse_error").error, errors.MalformedFrameError)
    assert isinstance(turn(kind="cut", code="upstream_failed").error, errors.StreamErrorEvent)


def test_a_finished_turn_has_no_error_and_keeps_usage() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    result = read_direct_turn(
        {"text": "hello", "status": "done", "usage": usage, "sessionId": "s-1", "traceId": "t"}
    )
    assert (result.text, result.status, result.error) == ("hello", "done", None)
    assert result.usage == usage
    assert (result.session_id, result.trace_id) == ("s-1", "t")


def test_a_stopped_turn_keeps_its_text() -> None:
    result = read_direct_turn({"text": "half an ans", "status": "stopped"})
    assert (result.text, result.status, result.error) == ("half an ans", "stopped", None)


def test_signed_out_is_flagged() -> None:
    assert turn(kind="signed_out", text="").signed_out is True
    assert turn(kind="server").signed_out is False


@pytest.mark.parametrize("payload", [None, "done", [], 42, {"status": "weird"}, {}])
def test_unusable_payloads_become_error_turns(payload) -> None:
    result = read_direct_turn(payload)
    assert result.status == "error"
    assert result.text == ""
    assert describe_error(result.error)[0] == "error"


def test_untrusted_fields_are_checked() -> None:
    result = read_direct_turn(
        {
            "text": "x" * (MAX_TEXT_CHARS + 10),
            "status": "error",
            "kind": "rate_limited",
            "retryAfter": -5,
            "httpStatus": 9999,
            "usage": {"prompt_tokens": "3", "completion_tokens": True, "total_tokens": -1},
            "traceId": "t" * 5000,
        }
    )
    assert len(result.text) == MAX_TEXT_CHARS
    assert result.error is not None
    assert result.error.retry_after is None and result.error.status is None
    assert result.usage is None
    assert len(result.trace_id) == 200


def test_the_turn_script_encodes_every_value() -> None:
    script = run_turn_script(
        base_url="http://localhost:8787",
        messages=[{"role": "user", "content": 'say "hi" </script>', "status": "done"}],
        session_id="conv-1",
    )
    call = re.fullmatch(
        r"window\.behestDirect \? window\.behestDirect\.runTurn\((.*)\) : Promise\.resolve\((.*)\)",
        script,
    )
    assert call is not None
    assert read_direct_turn(json.loads(call.group(2))).status == "error"
    assert json.loads(call.group(1)) == {
        "baseUrl": "http://localhost:8787",
        "messages": [{"role": "user", "content": 'say "hi" </script>'}],
        "sessionId": "conv-1",
        "threadId": None,
        "target": '[data-testid="direct-draft"]',
    }
