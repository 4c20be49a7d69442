"""The example page and the gateway probe over real HTTP: uvicorn, SQLite, the local gateway."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx

from behest_chat.api.examples import BROWSER_DIRECT_PATH, EXAMPLE_FILE, GATEWAY_STATUS_PATH
from tests.fixtures.app import free_port
from tests.fixtures.app_api import APP_ORIGIN, sign_up


def test_the_example_page_names_the_public_gateway_url(api_server_factory) -> None:
    public = "http://localhost:8787"
    server = api_server_factory(BEHEST_PUBLIC_BASE_URL=public)
    response = httpx.get(server.url + BROWSER_DIRECT_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "{{" not in page
    assert f'<meta name="behest-base-url" content="{public}" />' in page
    assert "fetchBehestToken" in page and "/v1/chat/completions" in page
    # The stored file is the template: it still has the placeholder.
    assert "{{BEHEST_PUBLIC_BASE_URL}}" in EXAMPLE_FILE.read_text()


def test_the_example_page_may_run_only_its_own_script_and_talk_to_app_and_gateway(
    api_server_factory,
) -> None:
    server = api_server_factory(BEHEST_PUBLIC_BASE_URL="https://fox-042.behest.app/")
    response = httpx.get(server.url + BROWSER_DIRECT_PATH)
    header = response.headers["content-security-policy"]
    policy = dict(part.strip().split(" ", 1) for part in header.split(";"))
    (script,) = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    assert policy["connect-src"] == "'self' https://fox-042.behest.app"
    assert policy["default-src"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_example_page_url_is_html_escaped(api_server_factory) -> None:
    server = api_server_factory(BEHEST_PUBLIC_BASE_URL='http://localhost:8787/a"b<c')
    page = httpx.get(server.url + BROWSER_DIRECT_PATH).text
    assert 'content="http://localhost:8787/a&quot;b&lt;c"' in page
    assert 'a"b<c' not in page


def test_the_example_page_refuses_other_methods_and_foreign_origins(api_server) -> None:
    url = api_server.url + BROWSER_DIRECT_PATH
    assert httpx.post(url).status_code == 405
    assert httpx.get(url, headers={"Origin": "http://evil.example"}).status_code == 403


def test_gateway_status_needs_a_session(api_server) -> None:
    response = httpx.get(api_server.url + GATEWAY_STATUS_PATH)
    assert response.status_code == 401
    assert response.json() == {"error": "not signed in"}
    assert response.headers["cache-control"] == "no-store"


def test_gateway_status_reports_a_running_gateway(api_server) -> None:
    client = sign_up(api_server, "carol")
    response = client.get(GATEWAY_STATUS_PATH, headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert response.json() == {"reachable": True, "via": "public"}
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


def test_gateway_status_falls_back_to_the_servers_url(api_server_factory) -> None:
    server = api_server_factory(BEHEST_PUBLIC_BASE_URL=f"http://127.0.0.1:{free_port()}")
    client = sign_up(server, "dave")
    assert client.get(GATEWAY_STATUS_PATH).json() == {"reachable": True, "via": "server"}


def test_gateway_status_reports_a_gateway_that_is_down(api_server_factory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = api_server_factory(BEHEST_BASE_URL=dead, BEHEST_PUBLIC_BASE_URL=dead)
    client = sign_up(server, "erin")
    assert client.get(GATEWAY_STATUS_PATH).json() == {"reachable": False, "via": None}


def test_the_token_endpoint_never_answers_with_wildcard_cors(api_server) -> None:
    url = api_server.url + "/api/behest/token"
    preflight = {"Access-Control-Request-Method": "POST"}
    foreign = httpx.options(url, headers={"Origin": "http://evil.example", **preflight})
    assert foreign.status_code == 403
    assert "access-control-allow-origin" not in foreign.headers
    own = httpx.options(url, headers={"Origin": APP_ORIGIN, **preflight})
    assert own.status_code == 204
    assert own.headers["access-control-allow-origin"] == APP_ORIGIN
    assert own.headers["vary"] == "Origin"
