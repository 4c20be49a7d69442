"""Error tree and the one function that maps HTTP error answers onto it."""

import email.utils
import inspect
import json

import pytest

from behest_chat.behest import errors


def envelope(code: str, message: str, details: dict | None = None) -> bytes:
    error: dict = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (400, errors.BadRequestError, "validation_error"),
        (422, errors.BadRequestError, "validation_error"),
        (401, errors.AuthenticationError, "invalid_token"),
        (402, errors.QuotaExceededError, "quota_exceeded"),
        (403, errors.PermissionDeniedError, "forbidden"),
        (404, errors.NotFoundError, "not_found"),
        (429, errors.RateLimitError, "rate_limited"),
        (500, errors.ServerError, "server_error"),
        (502, errors.ServerError, "server_error"),
        (503, errors.ServerError, "server_error"),
        (409, errors.BehestAPIError, "api_error"),
    ],
)
def test_status_maps_to_class_with_default_code(status: int, cls: type, code: str) -> None:
    error = errors.error_from_response(status, {}, b"")
    assert type(error) is cls
    assert error.status == status
    assert error.code == code
    assert error.message == f"HTTP {status}"
    assert isinstance(error, errors.BehestAPIError)


def test_nested_envelope_fields_and_trace_id() -> None:
    body = envelope("validation_error", "messages: required", {"field": "messages"})
    error = errors.error_from_response(400, {"X-Trace-Id": "tr-1"}, body)
    assert error.code == "validation_error"
    assert error.message == "messages: required"
    assert error.details == {"field": "messages"}
    assert error.trace_id == "tr-1"
    assert str(error) == "400 validation_error: messages: required"


def test_flat_mint_envelope_keeps_its_code_and_extras() -> None:
    body = json.dumps(
        {"error": "API key revoked", "code": "key_revoked", "retryable": False}
    ).encode()
    error = errors.error_from_response(401, {"x-request-id": "req-9"}, body)
    assert isinstance(error, errors.AuthenticationError)
    assert (error.code, error.message) == ("key_revoked", "API key revoked")
    assert error.details == {"retryable": False}
    assert error.trace_id == "req-9"


def test_quota_error_exposes_tier_limit_usage() -> None:
    details = {"tier": "free", "limit": {"tokens_per_day": 50000}, "usage": {"tokens_today": 50123}}
    error = errors.error_from_response(402, {}, envelope("quota_exceeded", "Free cap", details))
    assert isinstance(error, errors.QuotaExceededError)
    assert error.tier == "free"
    assert error.limit == {"tokens_per_day": 50000}
    assert error.usage == {"tokens_today": 50123}


def test_quota_error_without_details_has_empty_props() -> None:
    error = errors.error_from_response(402, {}, b"{}")
    assert isinstance(error, errors.QuotaExceededError)
    assert (error.tier, error.limit, error.usage) == (None, {}, {})


def test_rate_limit_reads_retry_after_seconds() -> None:
    error = errors.error_from_response(429, {"Retry-After": "17"}, envelope("rate_limited", "x"))
    assert isinstance(error, errors.RateLimitError)
    assert error.retry_after == 17


def test_rate_limit_reads_retry_after_http_date() -> None:
    in_30s = email.utils.formatdate(1_000_030, usegmt=True)
    assert errors.parse_retry_after(in_30s, now=1_000_000) == 30


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Wed, 99 Foo 2024"])
def test_unusable_retry_after_is_none(value: str | None) -> None:
    assert errors.parse_retry_after(value) is None


def test_retry_after_falls_back_to_details() -> None:
    body = envelope("rate_limited", "slow down", {"retry_after": 9})
    assert errors.error_from_response(429, {}, body).retry_after == 9


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[1, 2]", b"\xff\xfe", b'{"error": 5}'])
def test_unreadable_bodies_fall_back_to_defaults(body: bytes) -> None:
    error = errors.error_from_response(503, {}, body)
    assert isinstance(error, errors.ServerError)
    assert (error.code, error.message, error.details) == ("server_error", "HTTP 503", {})


def test_long_multiline_messages_become_one_bounded_line() -> None:
    error = errors.error_from_response(500, {}, envelope("server_error", "a\nb " * 500))
    assert "\n" not in error.message
    assert len(error.message) <= 300


def test_tree_shape() -> None:
    assert issubclass(errors.BehestConfigError, ValueError)
    assert issubclass(errors.InvalidArgumentError, ValueError)
    assert issubclass(errors.ConnectError, errors.BehestConnectionError)
    assert issubclass(errors.TimeoutError, errors.BehestConnectionError)
    for cls in (errors.StreamCutError, errors.MalformedFrameError, errors.StreamErrorEvent):
        assert issubclass(cls, errors.StreamError)
    for cls in (errors.BehestAPIError, errors.BehestConnectionError, errors.StreamError):
        assert issubclass(cls, errors.BehestError)


def test_every_class_has_a_distinct_kind_and_is_in_the_docstring() -> None:
    classes = [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, errors.BehestError)
    ]
    kinds = [cls.kind for cls in classes]
    assert len(kinds) == len(set(kinds))
    for cls in classes:
        assert cls.__name__ in (errors.__doc__ or "")
        assert cls.__name__ in errors.__all__


def test_default_attributes() -> None:
    error = errors.StreamCutError("ended early")
    assert (error.status, error.trace_id, error.retry_after, error.details) == (
        None,
        None,
        None,
        {},
    )
    assert error.code == "stream_cut"
    assert "ended early" in repr(error)
