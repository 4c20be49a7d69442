"""POST /api/auth/register|login|logout over real HTTP, against a migrated SQLite file."""

from __future__ import annotations

import socket
from http.cookies import SimpleCookie

import httpx
import pytest

from tests.fixtures.app_api import APP_ORIGIN, PASSWORD, sign_up

COOKIE = "behest_chat_session"
JSON_ORIGIN = {"Origin": APP_ORIGIN}


def session_cookie(response: httpx.Response) -> SimpleCookie:
    headers = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    assert len(headers) == 1, headers
    cookie = SimpleCookie()
    cookie.load(headers[0])
    assert COOKIE in cookie
    return cookie


def raw_set_cookie(response: httpx.Response) -> str:
    return response.headers["set-cookie"].lower()


def test_register_signs_in_with_a_strict_cookie(api_server) -> None:
    response = httpx.post(
        api_server.url + "/api/auth/register",
        json={"username": "Alice", "display_name": "Alice A.", "password": PASSWORD},
        headers=JSON_ORIGIN,
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True, "redirect": "/chat"}
    assert response.headers["cache-control"] == "no-store"
    morsel = session_cookie(response)[COOKIE]
    assert len(morsel.value) == 43
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert morsel["max-age"] == str(168 * 3600)
    assert "secure" not in raw_set_cookie(response)
    token = httpx.post(api_server.url + "/api/behest/token", cookies={COOKIE: morsel.value})
    assert token.status_code == 200


def test_secure_cookies_when_configured(api_server_factory) -> None:
    server = api_server_factory(APP_SECURE_COOKIES="true", APP_SESSION_TTL_HOURS="2")
    response = httpx.post(
        server.url + "/api/auth/register",
        json={"username": "bob", "display_name": "Bob", "password": PASSWORD},
    )
    morsel = session_cookie(response)[COOKIE]
    assert morsel["secure"] is True
    assert morsel["max-age"] == str(2 * 3600)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "x", "display_name": "X", "password": PASSWORD}, "username"),
        ({"username": "carol", "display_name": "C", "password": "short"}, "password"),
        ({"display_name": "C", "password": PASSWORD}, "username"),
        ({"username": "carol", "display_name": "C", "password": 12345678}, "password"),
    ],
)
def test_register_explains_a_bad_field(api_server, body: dict, field: str) -> None:
    response = httpx.post(api_server.url + "/api/auth/register", json=body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["ok"] is False and answer["field"] == field and answer["error"]
    assert "set-cookie" not in response.headers


def test_register_refuses_a_taken_username(api_server) -> None:
    sign_up(api_server, "dave")
    response = httpx.post(
        api_server.url + "/api/auth/register",
        json={"username": "DAVE", "display_name": "D", "password": PASSWORD},
    )
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "That username is taken.", "field": "username"}


def test_login_sets_a_new_session(api_server) -> None:
    sign_up(api_server, "erin")
    response = httpx.post(
        api_server.url + "/api/auth/login",
        json={"username": "Erin", "password": PASSWORD},
        headers=JSON_ORIGIN,
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True, "redirect": "/chat"}
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    morsel = session_cookie(response)[COOKIE]
    assert morsel["httponly"] is True and morsel["samesite"].lower() == "lax"
    token = httpx.post(api_server.url + "/api/behest/token", cookies={COOKIE: morsel.value})
    assert token.status_code == 200


def test_login_replaces_a_session_the_browser_already_had(api_server) -> None:
    client = sign_up(api_server, "fay")
    planted = client.cookies[COOKIE]
    response = client.post("/api/auth/login", json={"username": "fay", "password": PASSWORD})
    assert response.status_code == 200
    fresh = client.cookies[COOKIE]
    assert fresh != planted
    old = httpx.post(api_server.url + "/api/behest/token", cookies={COOKIE: planted})
    assert old.status_code == 401


def test_wrong_password_and_unknown_user_get_the_same_answer(api_server) -> None:
    sign_up(api_server, "gina")
    answers = []
    for username in ("gina", "nobody"):
        response = httpx.post(
            api_server.url + "/api/auth/login",
            json={"username": username, "password": "wrong password"},
        )
        answers.append((response.status_code, response.json(), "set-cookie" in response.headers))
    assert (
        answers[0]
        == answers[1]
        == (
            401,
            {"ok": False, "error": "Wrong username or password."},
            False,
        )
    )


def test_login_needs_both_fields(api_server) -> None:
    response = httpx.post(api_server.url + "/api/auth/login", json={"username": "gina"})
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "Enter your username and password."}


def test_sign_in_is_throttled_after_five_failures(api_server) -> None:
    sign_up(api_server, "hank")
    for _ in range(5):
        response = httpx.post(
            api_server.url + "/api/auth/login", json={"username": "hank", "password": "nope nope"}
        )
        assert response.status_code == 401
    for password in ("nope nope", PASSWORD):
        response = httpx.post(
            api_server.url + "/api/auth/login", json={"username": "hank", "password": password}
        )
        assert response.status_code == 429
        assert response.json() == {
            "ok": False,
            "error": "Too many attempts. Try again in 15 minutes.",
        }
        assert 840 < int(response.headers["retry-after"]) <= 900
        assert "set-cookie" not in response.headers


def test_sign_ups_from_one_address_are_limited_per_hour(api_server_factory) -> None:
    server = api_server_factory(APP_REGISTRATIONS_PER_HOUR="2")
    for name in ("pia", "pete"):
        sign_up(server, name)
    response = httpx.post(
        server.url + "/api/auth/register",
        json={"username": "paul", "display_name": "Paul", "password": PASSWORD},
    )
    assert response.status_code == 429
    assert response.json() == {"ok": False, "error": "Too many attempts. Try again in 60 minutes."}
    assert 3500 < int(response.headers["retry-after"]) <= 3600
    assert "set-cookie" not in response.headers
    login = httpx.post(
        server.url + "/api/auth/login", json={"username": "paul", "password": PASSWORD}
    )
    assert login.status_code == 401


def _failed_logins_from(server, forwarded_for: str, times: int) -> list[int]:
    return [
        httpx.post(
            server.url + "/api/auth/login",
            json={"username": f"nobody{n}", "password": "nope nope"},
            headers={"X-Forwarded-For": forwarded_for},
        ).status_code
        for n in range(times)
    ]


def test_a_trusted_proxy_names_the_client_the_throttle_counts(api_server_factory) -> None:
    server = api_server_factory(APP_TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8")
    assert _failed_logins_from(server, "203.0.113.5", 6) == [401] * 5 + [429]
    # Another client behind the same proxy is not locked out by the first one.
    assert _failed_logins_from(server, "198.51.100.7", 1) == [401]


def test_forwarded_for_is_ignored_without_trusted_proxies(api_server) -> None:
    assert _failed_logins_from(api_server, "203.0.113.5", 5) == [401] * 5
    # A forged header does not escape the lock on the connecting address.
    assert _failed_logins_from(api_server, "198.51.100.7", 1) == [429]


def test_logout_revokes_and_clears_the_cookie(api_server) -> None:
    client = sign_up(api_server, "ivy")
    secret = client.cookies[COOKIE]
    response = client.post("/api/auth/logout", headers=JSON_ORIGIN)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "redirect": "/login"}
    cleared = raw_set_cookie(response)
    assert cleared.startswith(f'{COOKIE}=""') or cleared.startswith(f"{COOKIE}=;")
    assert "max-age=0" in cleared and "httponly" in cleared and "path=/" in cleared
    assert (
        httpx.post(api_server.url + "/api/behest/token", cookies={COOKIE: secret}).status_code
        == 401
    )
    # Signing out again (or without a session) is harmless.
    assert httpx.post(api_server.url + "/api/auth/logout").status_code == 200


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/register", "/api/auth/logout"])
@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:3999", "null"])
def test_cross_origin_auth_posts_are_refused(api_server, path: str, origin: str) -> None:
    client = sign_up(api_server, "judy")
    secret = client.cookies[COOKIE]
    response = client.post(
        path,
        json={"username": "judy", "display_name": "J", "password": PASSWORD},
        headers={"Origin": origin},
    )
    assert response.status_code == 403
    assert response.json() == {"ok": False, "error": "origin not allowed"}
    assert "set-cookie" not in response.headers
    assert "access-control-allow-origin" not in response.headers
    # The forged logout did not end the session either.
    assert (
        httpx.post(api_server.url + "/api/behest/token", cookies={COOKIE: secret}).status_code
        == 200
    )


def test_a_form_post_is_not_accepted(api_server) -> None:
    sign_up(api_server, "kate")
    response = httpx.post(
        api_server.url + "/api/auth/login", data={"username": "kate", "password": PASSWORD}
    )
    assert response.status_code == 415
    assert response.json()["ok"] is False
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
def test_malformed_json_is_a_400(api_server, body: bytes) -> None:
    response = httpx.post(
        api_server.url + "/api/auth/login",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["ok"] is False


def test_an_oversized_body_is_a_413_without_being_read(api_server) -> None:
    json_type = {"Content-Type": "application/json"}
    # Declared: refused from its length. The body never follows; the answer comes anyway.
    url = httpx.URL(api_server.url)
    with socket.create_connection((url.host, url.port), timeout=10) as raw:
        raw.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n"
        )
        answer = b""
        while not answer.endswith(b"}") and (part := raw.recv(4096)):
            answer += part
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
    assert answer.endswith(b'{"ok":false,"error":"The request is too large."}'), answer[-80:]

    def chunks():  # no length given: refused once the limit is passed
        yield b'{"username": "'
        for _ in range(64):
            yield b"x" * 1024

    streamed = httpx.post(api_server.url + "/api/auth/login", content=chunks(), headers=json_type)
    assert streamed.status_code == 413 and "set-cookie" not in streamed.headers


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/register", "/api/auth/logout"])
def test_auth_routes_take_only_post(api_server, path: str) -> None:
    response = httpx.get(api_server.url + path)
    assert response.status_code == 405
    assert response.json() == {"ok": False, "error": "method not allowed"}
