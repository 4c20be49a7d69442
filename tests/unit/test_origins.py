"""Origins: normalising, strict list parsing, exact matching, and the suggested .env line."""

from __future__ import annotations

import pytest

from behest_chat.origins import (
    OriginError,
    is_allowed,
    normalize_origin,
    parse_origin_list,
    suggest_line,
)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://localhost:3000", "http://localhost:3000"),
        ("HTTP://LocalHost:3000/chat?x=1#top", "http://localhost:3000"),
        ("https://example.com:443/", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("http://example.com:443", "http://example.com:443"),
        ("https://example.com:80", "https://example.com:80"),
        ("http://[::1]:3000/", "http://[::1]:3000"),
        ("  https://app.example.com  ", "https://app.example.com"),
        ("https://app.example.com/@user?next=a@b", "https://app.example.com"),
    ],
)
def test_normalize_origin(url: str, origin: str) -> None:
    assert normalize_origin(url) == origin


@pytest.mark.parametrize(
    "url", ["localhost:3000", "ftp://example.com", "https://", "http://u:p@example.com", "x:99999"]
)
def test_normalize_origin_refuses_non_origins(url: str) -> None:
    with pytest.raises(OriginError):
        normalize_origin(url)


def test_parse_origin_list_accepts_exact_origins() -> None:
    assert parse_origin_list(
        "http://localhost:3000, https://app.example.com,http://[::1]:8080", "X"
    ) == ("http://localhost:3000", "https://app.example.com", "http://[::1]:8080")


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("*", "wildcards"),
        ("http://*.example.com", "wildcards"),
        ("http://localhost:3000/", "'http://localhost:3000'"),
        ("http://localhost:3000/chat", "'http://localhost:3000'"),
        ("http://localhost:3000?", "'http://localhost:3000'"),
        ("http://Example.com", "'http://example.com'"),
        ("https://example.com:443", "'https://example.com'"),
        ("example.com", "http://"),
        ("", "empty"),
        (" , ,", "empty"),
    ],
)
def test_parse_origin_list_refuses_with_a_hint(text: str, hint: str) -> None:
    with pytest.raises(OriginError) as caught:
        parse_origin_list(text, "BEHEST_ALLOWED_ORIGINS")
    message = str(caught.value)
    assert message.startswith("BEHEST_ALLOWED_ORIGINS: ")
    assert hint in message
    assert "\n" not in message


def test_is_allowed_is_an_exact_match() -> None:
    allowed = ("http://localhost:3000", "https://app.example.com")
    assert is_allowed("http://localhost:3000", allowed)
    assert is_allowed("https://app.example.com", allowed)
    assert not is_allowed("http://localhost:3001", allowed)
    assert not is_allowed("https://localhost:3000", allowed)
    assert not is_allowed("http://127.0.0.1:3000", allowed)
    assert not is_allowed("https://app.example.com.evil.test", allowed)
    assert not is_allowed("null", allowed)
    assert not is_allowed("", allowed)
    assert not is_allowed(None, allowed)


def test_suggest_line_appends_the_missing_origin() -> None:
    current = ("http://localhost:3000", "http://localhost:5173")
    assert suggest_line("BEHEST_ALLOWED_ORIGINS", current, "http://127.0.0.1:3000/chat") == (
        "BEHEST_ALLOWED_ORIGINS=http://localhost:3000,http://localhost:5173,http://127.0.0.1:3000"
    )


def test_suggest_line_keeps_a_list_that_already_has_the_origin() -> None:
    current = ("http://localhost:3000",)
    assert suggest_line("APP_ORIGINS", current, "HTTP://localhost:3000/") == (
        "APP_ORIGINS=http://localhost:3000"
    )


def test_suggest_line_round_trips_through_the_parser() -> None:
    line = suggest_line("APP_ORIGINS", ("https://a.example",), "https://b.example:8443")
    variable, value = line.split("=", 1)
    assert parse_origin_list(value, variable) == ("https://a.example", "https://b.example:8443")
