"""``python -m behest_chat.ask`` as a subprocess, against the gateway and the embedded one."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.gateway import RunningGateway

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_SECONDS = 30


@pytest.fixture
def gw(gateway: RunningGateway) -> RunningGateway:
    gateway.reset()
    return gateway


def run_ask(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI with only ``env`` as configuration (no .env file is read)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BEHEST_", "APP_"))}
    return subprocess.run(
        [sys.executable, "-m", "behest_chat.ask", *args],
        cwd=ROOT,
        env={**base, "APP_ENV_FILE": os.devnull, **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )


def remote_env(gw: RunningGateway) -> dict[str, str]:
    return {"BEHEST_KEY": gw.api_key, "BEHEST_BASE_URL": gw.base_url}


def sign_env(gw: RunningGateway) -> dict[str, str]:
    return {
        "BEHEST_KEY": "behest_pk_" + gw.signing_key_pem,
        "BEHEST_BASE_URL": gw.base_url,
        "BEHEST_KID": gw.kid,
        "BEHEST_TENANT_ID": gw.tenant_id,
        "BEHEST_PROJECT_ID": gw.project_id,
    }


def assert_one_error_line(result: subprocess.CompletedProcess[str], start: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(start), lines[0]
    return lines[0]


def test_streams_the_answer_with_an_api_key(gw: RunningGateway) -> None:
    result = run_ask(["--user", "alice", "echo: Hello from the CLI ✓"], remote_env(gw))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from the CLI ✓\n"
    assert result.stderr == ""
    stats = gw.stats()
    assert (stats["mints"], stats["chat_requests"], stats["streams_completed"]) == (1, 1, 1)


def test_streams_the_answer_with_a_signing_key(gw: RunningGateway) -> None:
    result = run_ask(["--user", "bob", "--tier", "pro", "echo: signed"], sign_env(gw))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "signed\n"
    assert gw.stats()["mints"] == 0


def test_words_are_joined_and_session_and_thread_are_sent(gw: RunningGateway) -> None:
    result = run_ask(
        ["--user", "carol", "--session", "cli-sess-1", "--thread", "cli-thread", "echo:", "a", "b"],
        remote_env(gw),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a b\n"
    assert [(u["uid"], u["session_id"]) for u in gw.stats()["usage"]] == [("carol", "cli-sess-1")]


def test_quota_error_is_one_line_and_exit_1(gw: RunningGateway) -> None:
    gw.set_fault(
        status=402,
        message="daily limit of the free tier reached",
        details={
            "tier": "free",
            "limit": {"requests_per_day": 100},
            "usage": {"requests_today": 100},
        },
    )
    result = run_ask(["--user", "alice", "echo: x"], remote_env(gw))
    assert result.returncode == 1
    assert result.stdout == ""
    line = assert_one_error_line(result, "error: quota_exceeded (HTTP 402): daily limit")
    assert "[tier free]" in line
    assert "[trace tr_" in line


def test_rate_limit_names_the_wait(gw: RunningGateway) -> None:
    gw.set_fault(status=429, retry_after=7)
    result = run_ask(["--user", "alice", "echo: x"], remote_env(gw))
    assert result.returncode == 1
    line = assert_one_error_line(result, "error: rate_limited (HTTP 429)")
    assert "retry after 7 s" in line


def test_cut_stream_keeps_the_partial_answer_and_fails(gw: RunningGateway) -> None:
    gw.set_fault(cut_after=4)
    result = run_ask(["--user", "alice", "long: 50"], remote_env(gw))
    assert result.returncode == 1
    assert result.stdout  # what arrived before the cut was printed
    assert_one_error_line(result, "error: stream_cut (HTTP 200)")


def test_unreachable_gateway_fails_quickly(
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    gone = gateway_factory()
    gone.stop()
    result = run_ask(["--user", "alice", "echo: x"], remote_env(gone))
    assert result.returncode == 1
    assert_one_error_line(result, "error: connect_failed: could not connect to http://127.0.0.1:")


def test_bad_key_is_one_line_without_the_key(gw: RunningGateway) -> None:
    secret = "behest_sk_live_" + "z" * 8  # too short to be valid
    result = run_ask(
        ["--user", "alice", "x"], {"BEHEST_KEY": secret, "BEHEST_BASE_URL": gw.base_url}
    )
    assert result.returncode == 2
    line = assert_one_error_line(result, "error: BEHEST_KEY: malformed API key")
    assert secret not in line


def test_missing_kid_with_a_signing_key(gw: RunningGateway) -> None:
    env = sign_env(gw)
    del env["BEHEST_KID"]
    result = run_ask(["--user", "alice", "x"], env)
    assert result.returncode == 2
    line = assert_one_error_line(result, "error: BEHEST_KID: required")
    assert "PRIVATE KEY" not in line


def test_bad_arguments_exit_2_before_any_request(gw: RunningGateway) -> None:
    reserved = run_ask(["--user", "admin", "x"], remote_env(gw))
    assert reserved.returncode == 2
    assert_one_error_line(reserved, "error: user_id: 'admin' is reserved")
    tier = run_ask(["--user", "alice", "--tier", "gold", "x"], remote_env(gw))
    assert tier.returncode == 2
    assert_one_error_line(tier, "error: tier: must be 1, 2, 3")
    paths = gw.stats()["requests_by_path"]
    assert "/v1/auth/mint" not in paths and "/v1/chat/completions" not in paths


def test_missing_question_is_a_usage_error(gw: RunningGateway) -> None:
    result = run_ask(["--user", "alice"], remote_env(gw))
    assert result.returncode == 2
    assert "question" in result.stderr


def test_without_base_url_the_embedded_gateway_answers() -> None:
    key = "behest_sk_live_" + "e" * 32
    result = run_ask(["--user", "alice", "echo: from the embedded gateway"], {"BEHEST_KEY": key})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the embedded gateway\n"


def test_embedded_gateway_with_a_signing_key(gw: RunningGateway) -> None:
    env = sign_env(gw)
    del env["BEHEST_BASE_URL"]  # the embedded gateway trusts the key's public half
    result = run_ask(["--user", "dora", "echo: local signing, local gateway"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "local signing, local gateway\n"
    assert gw.stats()["chat_requests"] == 0  # the shared gateway was not involved
