"""Settings: defaults, precedence, modes, masking, and one clear line per bad value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from behest_chat.behest import keys
from behest_chat.settings import (
    Secret,
    SettingsError,
    get_settings,
    load_app_origins,
    load_database_url,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "behest_sk_live_0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def signing_key() -> str:
    return keys.SIGNING_KEY_PREFIX + keys.generate_signing_key_pem()


def load(**env: str):
    return load_settings(env_file=None, environ={"BEHEST_KEY": API_KEY, **env})


def test_defaults_select_the_embedded_gateway() -> None:
    settings = load()
    assert settings.mode == "local gateway"
    assert settings.uses_embedded_gateway
    assert settings.key_kind == "api_key"
    assert settings.behest_base_url is None
    assert settings.effective_base_url == "http://127.0.0.1:8787"
    assert settings.behest_public_base_url == "http://localhost:8787"
    assert settings.token_ttl == 900
    assert settings.allowed_origins == ("http://localhost:3000", "http://localhost:5173")
    assert settings.app_origins == ("http://localhost:3000", "http://127.0.0.1:3000")
    assert settings.app_origin == "http://localhost:3000"
    assert settings.database_url.get() == "sqlite:///behest_chat.db"
    assert settings.redis_url is None
    assert settings.session_ttl_hours == 168
    assert settings.secure_cookies is False


def test_gateway_host_and_port_shape_the_urls() -> None:
    settings = load(BEHEST_GATEWAY_HOST="0.0.0.0", BEHEST_GATEWAY_PORT="9901")
    assert settings.gateway_host == "0.0.0.0"
    assert settings.effective_base_url == "http://127.0.0.1:9901"
    assert settings.behest_public_base_url == "http://localhost:9901"


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"BEHEST_KEY={API_KEY}\nBEHEST_TOKEN_TTL=600\nBEHEST_GATEWAY_PORT=9000\n", encoding="utf-8"
    )
    settings = load_settings(env_file, environ={"BEHEST_TOKEN_TTL": "300"})
    assert settings.token_ttl == 300
    assert settings.gateway_port == 9000


def test_missing_env_file_reads_only_the_environment(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "absent.env", environ={"BEHEST_KEY": API_KEY})
    assert settings.token_ttl == 900


def test_empty_values_count_as_unset() -> None:
    settings = load(BEHEST_BASE_URL="", BEHEST_TOKEN_TTL=" ", APP_ORIGINS="")
    assert settings.behest_base_url is None
    assert settings.token_ttl == 900
    assert settings.app_origins == ("http://localhost:3000", "http://127.0.0.1:3000")


def test_app_origins_follow_the_app_port_unless_given() -> None:
    assert load(APP_PORT="4100").app_origins == ("http://localhost:4100", "http://127.0.0.1:4100")
    assert load(APP_PORT="4100", APP_ORIGINS="https://chat.example.com").app_origins == (
        "https://chat.example.com",
    )
    assert load_app_origins(None, {"APP_PORT": "4200"})[0] == "http://localhost:4200"


def test_remote_mint_mode_strips_the_trailing_slash() -> None:
    settings = load(BEHEST_BASE_URL="https://amber-fox-042.behest.app/")
    assert settings.mode == "remote mint"
    assert not settings.uses_embedded_gateway
    assert settings.behest_base_url == "https://amber-fox-042.behest.app"
    assert settings.effective_base_url == "https://amber-fox-042.behest.app"
    assert settings.behest_public_base_url == "https://amber-fox-042.behest.app"


def test_public_base_url_can_differ_from_the_base_url() -> None:
    settings = load(
        BEHEST_BASE_URL="http://gateway.internal:8787",
        BEHEST_PUBLIC_BASE_URL="https://gateway.example.com/",
    )
    assert settings.effective_base_url == "http://gateway.internal:8787"
    assert settings.behest_public_base_url == "https://gateway.example.com"


def test_local_signing_mode_passes_kid_tenant_and_project(signing_key: str) -> None:
    settings = load_settings(
        env_file=None,
        environ={
            "BEHEST_KEY": signing_key,
            "BEHEST_BASE_URL": "https://amber-fox-042.behest.app",
            "BEHEST_KID": "kid_7h4m2p",
            "BEHEST_TENANT_ID": "tnt_1",
            "BEHEST_PROJECT_ID": "proj_1",
        },
    )
    assert settings.mode == "local signing"
    assert settings.key_kind == "sign"
    assert settings.client_kwargs() == {
        "key": signing_key.strip(),
        "base_url": "https://amber-fox-042.behest.app",
        "kid": "kid_7h4m2p",
        "tenant_id": "tnt_1",
        "project_id": "proj_1",
    }


def test_signing_key_with_the_embedded_gateway(signing_key: str) -> None:
    settings = load_settings(
        env_file=None,
        environ={
            "BEHEST_KEY": signing_key,
            "BEHEST_KID": "kid_local",
            "BEHEST_TENANT_ID": "tnt_local",
            "BEHEST_PROJECT_ID": "proj_local",
        },
    )
    assert settings.mode == "local gateway"
    assert settings.client_kwargs()["kid"] == "kid_local"
    assert settings.client_kwargs()["base_url"] == "http://127.0.0.1:8787"


def test_audience_is_passed_only_with_a_signing_key(signing_key: str) -> None:
    environ = {
        "BEHEST_KEY": signing_key,
        "BEHEST_KID": "kid_1",
        "BEHEST_TENANT_ID": "tnt_1",
        "BEHEST_PROJECT_ID": "proj_1",
        "BEHEST_AUDIENCE": "behest-eu",
    }
    assert load_settings(None, environ).client_kwargs()["audience"] == "behest-eu"
    assert "audience" not in load(BEHEST_AUDIENCE="behest-eu").client_kwargs()


def test_api_key_client_kwargs_leave_signing_ids_out() -> None:
    settings = load(
        BEHEST_KID="kid_x", BEHEST_TENANT_ID="t", BEHEST_PROJECT_ID="p", BEHEST_AUDIENCE="a"
    )
    assert settings.client_kwargs() == {
        "key": API_KEY,
        "base_url": "http://127.0.0.1:8787",
        "kid": None,
        "tenant_id": None,
        "project_id": None,
    }


def test_secrets_are_masked_in_repr_and_str() -> None:
    settings = load(
        DATABASE_URL="postgresql+psycopg://app:db-pass-123@127.0.0.1/app",
        REDIS_URL="redis://:redis-pass-456@127.0.0.1:6379/0",
    )
    for text in (repr(settings), str(settings)):
        assert API_KEY not in text
        assert "db-pass-123" not in text
        assert "redis-pass-456" not in text
    assert str(Secret("hunter2")) == repr(Secret("hunter2")) == "Secret('**********')"
    assert settings.redis_url is not None
    assert settings.redis_url.get() == "redis://:redis-pass-456@127.0.0.1:6379/0"


def test_key_fingerprint_is_a_short_label() -> None:
    settings = load()
    assert settings.key_fingerprint == keys.fingerprint(API_KEY)
    assert settings.key_fingerprint.startswith("sha256:")
    assert API_KEY[15:] not in settings.key_fingerprint


def test_secure_cookies_follow_the_canonical_origin() -> None:
    assert load(APP_ORIGINS="https://chat.example.com,http://localhost:3000").secure_cookies
    assert not load(APP_ORIGINS="http://localhost:3000,https://chat.example.com").secure_cookies
    explicit = load(APP_ORIGINS="https://chat.example.com", APP_SECURE_COOKIES="false")
    assert not explicit.secure_cookies
    assert load(APP_SECURE_COOKIES="yes").secure_cookies


def test_origin_lists_keep_order_and_drop_duplicates() -> None:
    settings = load(
        BEHEST_ALLOWED_ORIGINS=" https://b.example.com , http://localhost:5173,https://b.example.com",
        APP_ORIGINS="https://chat.example.com,http://127.0.0.1:3000",
    )
    assert settings.allowed_origins == ("https://b.example.com", "http://localhost:5173")
    assert settings.app_origin == "https://chat.example.com"


def test_accepted_database_and_redis_urls() -> None:
    assert load(DATABASE_URL="postgresql://u@h/db").database_url.get() == "postgresql://u@h/db"
    assert load(DATABASE_URL="sqlite:////tmp/x.db").database_url.get() == "sqlite:////tmp/x.db"
    redis_url = load(REDIS_URL="rediss://cache.example.com:6380").redis_url
    assert redis_url is not None
    assert redis_url.get() == "rediss://cache.example.com:6380"


def test_get_settings_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    monkeypatch.setenv("BEHEST_KEY", API_KEY)
    get_settings.cache_clear()
    try:
        first = get_settings()
        monkeypatch.setenv("BEHEST_TOKEN_TTL", "120")
        assert get_settings() is first
        get_settings.cache_clear()
        assert get_settings().token_ttl == 120
    finally:
        get_settings.cache_clear()


def test_database_url_alone_needs_no_behest_key() -> None:
    assert load_database_url(None, {}) == "sqlite:///behest_chat.db"
    assert load_database_url(None, {"DATABASE_URL": "sqlite:///x.db"}) == "sqlite:///x.db"
    with pytest.raises(SettingsError, match=r"^DATABASE_URL: "):
        load_database_url(None, {"DATABASE_URL": "mysql://h/db"})


BAD_VALUES = [
    # (variable named in the error, environment overrides, text that must not leak)
    ("BEHEST_KEY", {"BEHEST_KEY": ""}, None),
    ("BEHEST_KEY", {"BEHEST_KEY": "__GENERATE__"}, "__GENERATE__"),
    ("BEHEST_KEY", {"BEHEST_KEY": "behest_sk_live_REPLACE_ME_0123456789"}, "0123456789"),
    ("BEHEST_KEY", {"BEHEST_KEY": "behest_sk_test_0123456789abcdef0123"}, "0123456789abcdef"),
    ("BEHEST_KEY", {"BEHEST_KEY": "behest_sk_live_s3cr3t"}, "s3cr3t"),
    ("BEHEST_KEY", {"BEHEST_KEY": "hunter2-not-a-key"}, "hunter2"),
    ("BEHEST_KEY", {"BEHEST_KEY": "behest_pk_c2VjcmV0LXN0dWZm"}, "c2VjcmV0LXN0dWZm"),
    ("BEHEST_BASE_URL", {"BEHEST_BASE_URL": "amber-fox-042.behest.app"}, None),
    ("BEHEST_BASE_URL", {"BEHEST_BASE_URL": "ftp://amber-fox-042.behest.app"}, None),
    ("BEHEST_BASE_URL", {"BEHEST_BASE_URL": "https://"}, None),
    ("BEHEST_BASE_URL", {"BEHEST_BASE_URL": "https://u:pa55word@host.example"}, "pa55word"),
    ("BEHEST_BASE_URL", {"BEHEST_BASE_URL": "https://host.example?x=1"}, None),
    ("BEHEST_BASE_URL", {"BEHEST_BASE_URL": "https://host.example:99999"}, None),
    ("BEHEST_PUBLIC_BASE_URL", {"BEHEST_PUBLIC_BASE_URL": "localhost:8787"}, None),
    ("BEHEST_TOKEN_TTL", {"BEHEST_TOKEN_TTL": "fifteen"}, None),
    ("BEHEST_TOKEN_TTL", {"BEHEST_TOKEN_TTL": "59"}, None),
    ("BEHEST_TOKEN_TTL", {"BEHEST_TOKEN_TTL": "86401"}, None),
    ("BEHEST_ALLOWED_ORIGINS", {"BEHEST_ALLOWED_ORIGINS": "*"}, None),
    ("BEHEST_ALLOWED_ORIGINS", {"BEHEST_ALLOWED_ORIGINS": "https://*.example.com"}, None),
    ("BEHEST_ALLOWED_ORIGINS", {"BEHEST_ALLOWED_ORIGINS": "http://localhost:3000/"}, None),
    ("BEHEST_ALLOWED_ORIGINS", {"BEHEST_ALLOWED_ORIGINS": "http://a.example/chat"}, None),
    ("BEHEST_ALLOWED_ORIGINS", {"BEHEST_ALLOWED_ORIGINS": "localhost:3000"}, None),
    ("BEHEST_ALLOWED_ORIGINS", {"BEHEST_ALLOWED_ORIGINS": "http://LOCALHOST:3000"}, None),
    ("BEHEST_ALLOWED_ORIGINS", {"BEHEST_ALLOWED_ORIGINS": "https://a.example:443"}, None),
    ("BEHEST_ALLOWED_ORIGINS", {"BEHEST_ALLOWED_ORIGINS": " , "}, None),
    ("APP_ORIGINS", {"APP_ORIGINS": "ws://localhost:3000"}, None),
    ("APP_ORIGINS", {"APP_ORIGINS": "http://u:pw-789@localhost:3000"}, "pw-789"),
    ("BEHEST_GATEWAY_HOST", {"BEHEST_GATEWAY_HOST": "http://127.0.0.1"}, None),
    ("BEHEST_GATEWAY_HOST", {"BEHEST_GATEWAY_HOST": "my host"}, None),
    ("BEHEST_GATEWAY_PORT", {"BEHEST_GATEWAY_PORT": "0"}, None),
    ("BEHEST_GATEWAY_PORT", {"BEHEST_GATEWAY_PORT": "65536"}, None),
    ("BEHEST_GATEWAY_PORT", {"BEHEST_GATEWAY_PORT": "eighty"}, None),
    ("DATABASE_URL", {"DATABASE_URL": "mysql://app:db-secret@h/db"}, "db-secret"),
    ("DATABASE_URL", {"DATABASE_URL": "postgres://app:db-secret@h/db"}, "db-secret"),
    ("DATABASE_URL", {"DATABASE_URL": "behest_chat.db"}, None),
    ("DATABASE_URL", {"DATABASE_URL": "sqlite://"}, None),
    ("REDIS_URL", {"REDIS_URL": "http://cache:6379"}, None),
    ("REDIS_URL", {"REDIS_URL": "redis://:redis-secret@"}, "redis-secret"),
    ("APP_SESSION_TTL_HOURS", {"APP_SESSION_TTL_HOURS": "0"}, None),
    ("APP_SESSION_TTL_HOURS", {"APP_SESSION_TTL_HOURS": "a week"}, None),
    ("APP_SECURE_COOKIES", {"APP_SECURE_COOKIES": "maybe"}, None),
    ("APP_REGISTRATIONS_PER_HOUR", {"APP_REGISTRATIONS_PER_HOUR": "-1"}, None),
    ("APP_REGISTRATIONS_PER_HOUR", {"APP_REGISTRATIONS_PER_HOUR": "lots"}, None),
    ("APP_TRUSTED_PROXIES", {"APP_TRUSTED_PROXIES": "10.0.0.1, proxy.internal"}, None),
    ("APP_TRUSTED_PROXIES", {"APP_TRUSTED_PROXIES": "10.0.0.0/33"}, None),
]


@pytest.mark.parametrize(
    ("variable", "overrides", "secret"),
    BAD_VALUES,
    ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(BAD_VALUES)],
)
def test_bad_value_gives_one_line_naming_the_variable(
    variable: str, overrides: dict[str, str], secret: str | None
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(**overrides)
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert API_KEY not in message
    if secret is not None:
        assert secret not in message


@pytest.mark.parametrize("missing", ["BEHEST_KID", "BEHEST_TENANT_ID", "BEHEST_PROJECT_ID"])
def test_signing_key_needs_each_id(signing_key: str, missing: str) -> None:
    environ = {
        "BEHEST_KEY": signing_key,
        "BEHEST_KID": "kid_1",
        "BEHEST_TENANT_ID": "tnt_1",
        "BEHEST_PROJECT_ID": "proj_1",
    }
    del environ[missing]
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None, environ=environ)
    message = str(caught.value)
    assert message.startswith(f"{missing}: ")
    assert "\n" not in message
    assert "PRIVATE KEY" not in message
    assert signing_key[20:60] not in message


def test_bad_pem_signing_key_is_not_echoed() -> None:
    pem_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    broken = f"behest_pk_-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----"
    with pytest.raises(SettingsError) as caught:
        load(BEHEST_KEY=broken)
    assert str(caught.value).startswith("BEHEST_KEY: ")
    assert pem_body not in str(caught.value)


def run_check(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "behest_chat.settings", "check"],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_command_reads_app_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(f"BEHEST_KEY={API_KEY}\nBEHEST_GATEWAY_PORT=9911\n", encoding="utf-8")
    result = run_check(tmp_path, {"APP_ENV_FILE": str(env_file)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("settings OK: local gateway, key sha256:")
    assert "http://127.0.0.1:9911" in result.stdout
    assert API_KEY not in result.stdout


def test_check_command_fails_with_one_line(tmp_path: Path) -> None:
    result = run_check(tmp_path, {"BEHEST_KEY": API_KEY, "BEHEST_TOKEN_TTL": "5"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "settings: BEHEST_TOKEN_TTL: 5 is out of range; expected 60 to 86400"
    ]


def test_env_example_is_valid_once_generated(tmp_path: Path) -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    env_file = tmp_path / ".env"
    env_file.write_text(text.replace("__GENERATE__", API_KEY), encoding="utf-8")
    settings = load_settings(env_file, environ={})
    assert settings.mode == "local gateway"
    assert settings.effective_base_url == "http://127.0.0.1:8787"


def test_env_example_placeholder_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^BEHEST_KEY: still the placeholder"):
        load_settings(ROOT / ".env.example", environ={})


def test_env_example_lists_every_variable_the_settings_read() -> None:
    source = (ROOT / "behest_chat" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r'"((?:BEHEST|APP)_[A-Z_]+|DATABASE_URL|REDIS_URL)"', source))
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE))
    assert read - {"APP_ENV_FILE"} <= listed
    assert len(read) >= 15


def test_token_budgets_default_to_the_gateway_tiers_and_can_be_changed() -> None:
    settings = load_settings(None, {"BEHEST_KEY": API_KEY})
    assert [settings.daily_token_budget(t) for t in (1, 2, 3)] == [50_000, 2_000_000, 20_000_000]
    assert settings.daily_token_budget(7) == 50_000  # an unknown tier is treated as free
    assert settings.conversation_token_cap is None
    assert settings.stream_idle_timeout_s == 60
    assert settings.registrations_per_hour == 20
    assert settings.trusted_proxies == ()
    changed = load_settings(
        None,
        {
            "BEHEST_KEY": API_KEY,
            "APP_DAILY_TOKEN_BUDGET_FREE": "0",
            "APP_DAILY_TOKEN_BUDGET_PRO": "1234",
            "APP_DAILY_TOKEN_BUDGET_MAX": "99",
            "APP_CONVERSATION_TOKEN_CAP": "5000",
            "APP_STREAM_IDLE_TIMEOUT_S": "3",
            "APP_TRUSTED_PROXIES": " 10.0.0.1, 192.168.7.9/16 ,",
        },
    )
    assert [changed.daily_token_budget(t) for t in (1, 2, 3)] == [0, 1234, 99]
    assert changed.conversation_token_cap == 5000
    assert changed.stream_idle_timeout_s == 3
    assert changed.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APP_DAILY_TOKEN_BUDGET_FREE", "-1"),
        ("APP_DAILY_TOKEN_BUDGET_PRO", "lots"),
        ("APP_CONVERSATION_TOKEN_CAP", "0"),
        ("APP_STREAM_IDLE_TIMEOUT_S", "0"),
    ],
)
def test_bad_budget_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        load_settings(None, {"BEHEST_KEY": API_KEY, variable: value})
