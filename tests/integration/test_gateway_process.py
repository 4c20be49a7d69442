"""Starting the gateway: ``python -m behest_chat.gateway`` and the embedded ``serve()``."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from behest_chat.gateway import GatewayConfig, GatewayStartError, serve
from tests.fixtures.gateway import ROOT, _wait_until_ready, bearer, sse_data


def _api_key() -> str:
    return "behest_sk_live_" + secrets.token_hex(16)


VALID_KEY = "behest_sk_live_" + secrets.token_hex(16)


def _child_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEHEST_")}
    return {**env, "PYTHONUNBUFFERED": "1", **variables}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "behest_chat.gateway", "--env-file", os.devnull, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("variables", "named", "secret"),
    [
        ({"BEHEST_KEY": "behest_sk_live_sh0rt!s3cr3t"}, "BEHEST_KEY", "sh0rt!s3cr3t"),
        ({}, "BEHEST_KEY", None),
        (
            {
                "BEHEST_KEY": "behest_pk_-----BEGIN PRIVATE KEY-----\nQUJD\n"
                "-----END PRIVATE KEY-----"
            },
            "BEHEST_KEY",
            "QUJD",
        ),
        ({"BEHEST_KEY": VALID_KEY, "BEHEST_GATEWAY_LEEWAY": "45"}, "BEHEST_GATEWAY_LEEWAY", None),
        (
            {"BEHEST_KEY": VALID_KEY, "BEHEST_GATEWAY_LIMITS": '{"free": {"rpm": 0}}'},
            "BEHEST_GATEWAY_LIMITS",
            None,
        ),
        ({"BEHEST_KEY": VALID_KEY, "BEHEST_ALLOWED_ORIGINS": "*"}, "BEHEST_ALLOWED_ORIGINS", None),
        (
            {"BEHEST_KEY": VALID_KEY, "BEHEST_GATEWAY_UPSTREAM_URL": "http://127.0.0.1:11434/v1"},
            "BEHEST_GATEWAY_UPSTREAM_MODEL",
            None,
        ),
        (
            {"BEHEST_KEY": VALID_KEY, "BEHEST_GATEWAY_CONFIG": "/nonexistent/gateway.json"},
            "BEHEST_GATEWAY_CONFIG",
            None,
        ),
    ],
)
def test_bad_settings_exit_2_with_one_line_naming_the_variable(
    variables: dict[str, str], named: str, secret: str | None
) -> None:
    result = _run(_child_env(**variables), "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    if secret:
        assert secret not in result.stderr
    assert result.stdout == ""


def test_busy_port_exits_1_naming_the_port_setting(busy_port: int) -> None:
    result = _run(_child_env(BEHEST_KEY=_api_key()), "--port", str(busy_port))
    assert result.returncode == 1
    assert "BEHEST_GATEWAY_PORT" in result.stderr
    assert str(busy_port) in result.stderr


def test_reads_dotenv_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv_key, env_key = _api_key(), _api_key()
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"BEHEST_KEY={dotenv_key}\nBEHEST_ALLOWED_ORIGINS=http://from-dotenv.example:8080\n"
        "BEHEST_GATEWAY_TOKEN_DELAY_MS=0\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "behest_chat.gateway", "--port", "0", "--env-file", str(dotenv)],
        cwd=ROOT,
        env=_child_env(BEHEST_KEY=env_key),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        base_url = _wait_until_ready(process, tmp_path / "missing.log")
        mint = httpx.post(
            base_url + "/v1/auth/mint", json={"user_id": "u"}, headers=bearer(env_key)
        )
        assert mint.status_code == 200
        assert (
            httpx.post(
                base_url + "/v1/auth/mint", json={"user_id": "u"}, headers=bearer(dotenv_key)
            ).status_code
            == 401
        )
        preflight = httpx.options(
            base_url + "/v1/chat/completions",
            headers={
                "Origin": "http://from-dotenv.example:8080",
                "Access-Control-Request-Method": "POST",
            },
        )
        assert preflight.status_code == 204
    finally:
        process.terminate()
        process.wait(timeout=10)  # SIGTERM stops it promptly


async def test_embedded_gateway_serves_in_this_loop_and_stops_cleanly() -> None:
    key = _api_key()
    config = GatewayConfig.from_env(
        {"BEHEST_KEY": key, "BEHEST_GATEWAY_PORT": "0", "BEHEST_GATEWAY_TOKEN_DELAY_MS": "0"}
    )
    async with serve(config) as gateway, httpx.AsyncClient(base_url=gateway.base_url) as client:
        minted = await client.post(
            "/v1/auth/mint", json={"user_id": "embedded"}, headers=bearer(key)
        )
        token = minted.json()["jwt"]
        response = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "echo: in-process"}], "stream": True},
            headers=bearer(token),
        )
        assert sse_data(response.content)[-1] == "[DONE]"
        assert gateway.app.state.gateway.store.stats.streams_completed == 1
        base_url = gateway.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/.well-known/jwks.json")


async def test_embedded_gateway_on_a_busy_port_raises_one_line(busy_port: int) -> None:
    config = GatewayConfig.from_env({"BEHEST_KEY": _api_key()})
    with pytest.raises(GatewayStartError) as caught:
        async with serve(config, host="127.0.0.1", port=busy_port):
            pass
    message = str(caught.value)
    assert "BEHEST_GATEWAY_PORT" in message and str(busy_port) in message
    assert "\n" not in message
