"""GatewayConfig.from_env: defaults, key forms, config file, and one-line errors."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from behest_chat.gateway.config import GatewayConfig, load_environ, parse_origins
from behest_chat.gateway.tiers import DEFAULT_LIMITS, TierLimit

API_KEY = "behest_sk_live_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_api_key_alone_gives_the_local_default_project() -> None:
    config = GatewayConfig.from_env({"BEHEST_KEY": API_KEY})
    project = config.default_project
    assert (project.tenant_id, project.project_id) == ("tnt_local", "proj_local")
    assert project.api_keys == (API_KEY,)
    assert project.allowed_origins == ("http://localhost:3000", "http://localhost:5173")
    assert project.limit_for("free") == DEFAULT_LIMITS["free"] == TierLimit(10, 100, 50_000)
    assert (config.host, config.port, config.leeway_seconds, config.token_delay_ms) == (
        "127.0.0.1",
        8787,
        10,
        20.0,
    )
    assert (config.audience, config.issuer) == ("behest", "https://api.behest.app")
    assert config.upstream is None and not config.faults_enabled
    assert config.reserved_user_ids == {"admin", "dashboard-service", "system"}


def test_secrets_never_appear_in_repr(private_pem: str) -> None:
    config = GatewayConfig.from_env(
        {
            "BEHEST_KEY": API_KEY,
            "BEHEST_GATEWAY_SIGNING_KEY": private_pem,
            "BEHEST_GATEWAY_UPSTREAM_URL": "http://127.0.0.1:11434/v1",
            "BEHEST_GATEWAY_UPSTREAM_MODEL": "llama3",
            "BEHEST_GATEWAY_UPSTREAM_KEY": "upstream-secret-value",
        }
    )
    shown = repr(config)
    assert API_KEY not in shown and "upstream-secret-value" not in shown and "PRIVATE" not in shown
    assert "llama3" in shown


@pytest.mark.parametrize("form", ["prefixed raw PEM", "prefixed base64", "bare base64"])
def test_signing_key_forms_register_the_public_half(private_pem: str, form: str) -> None:
    encoded = base64.b64encode(private_pem.encode()).decode()
    key = {
        "prefixed raw PEM": "behest_pk_" + private_pem,
        "prefixed base64": "behest_pk_" + encoded,
        "bare base64": encoded,
    }[form]
    config = GatewayConfig.from_env(
        {
            "BEHEST_KEY": key,
            "BEHEST_KID": "kid_1",
            "BEHEST_TENANT_ID": "tnt_a",
            "BEHEST_PROJECT_ID": "proj_a",
        }
    )
    project = config.default_project
    assert (project.tenant_id, project.project_id) == ("tnt_a", "proj_a")
    assert project.api_keys == ()
    public = project.signing_keys["kid_1"]
    assert public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode() == _public_pem(private_pem)


def test_signing_key_needs_a_kid(private_pem: str) -> None:
    with pytest.raises(ValueError, match=r"^BEHEST_KID: ") as caught:
        GatewayConfig.from_env({"BEHEST_KEY": "behest_pk_" + private_pem})
    assert "PRIVATE" not in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "BEHEST_KEY"),
        ({"BEHEST_KEY": "behest_sk_live_tooshort"}, "BEHEST_KEY"),
        ({"BEHEST_KEY": "behest_sk_test_" + "a" * 32}, "BEHEST_KEY"),
        ({"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_LEEWAY": "31"}, "BEHEST_GATEWAY_LEEWAY"),
        ({"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_LEEWAY": "ten"}, "BEHEST_GATEWAY_LEEWAY"),
        ({"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_PORT": "70000"}, "BEHEST_GATEWAY_PORT"),
        (
            {"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_TOKEN_DELAY_MS": "-1"},
            "BEHEST_GATEWAY_TOKEN_DELAY_MS",
        ),
        ({"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_FAULTS": "maybe"}, "BEHEST_GATEWAY_FAULTS"),
        ({"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_LIMITS": "{"}, "BEHEST_GATEWAY_LIMITS"),
        (
            {"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_LIMITS": '{"gold": {"rpm": 1}}'},
            "BEHEST_GATEWAY_LIMITS",
        ),
        (
            {"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_LIMITS": '{"free": {"rph": 1}}'},
            "BEHEST_GATEWAY_LIMITS",
        ),
        (
            {"BEHEST_KEY": API_KEY, "BEHEST_ALLOWED_ORIGINS": "http://localhost:3000/"},
            "BEHEST_ALLOWED_ORIGINS",
        ),
        (
            {"BEHEST_KEY": API_KEY, "BEHEST_ALLOWED_ORIGINS": "localhost:3000"},
            "BEHEST_ALLOWED_ORIGINS",
        ),
        (
            {"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_UPSTREAM_URL": "ftp://x"},
            "BEHEST_GATEWAY_UPSTREAM_URL",
        ),
        (
            {"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_SIGNING_KEY": API_KEY},
            "BEHEST_GATEWAY_SIGNING_KEY",
        ),
    ],
)
def test_bad_values_raise_one_line_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError) as caught:
        GatewayConfig.from_env(environ)
    message = str(caught.value)
    assert message.startswith(named)
    assert "\n" not in message
    assert API_KEY not in message


def test_empty_values_count_as_unset() -> None:
    config = GatewayConfig.from_env(
        {"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_UPSTREAM_URL": "", "BEHEST_GATEWAY_LEEWAY": " "}
    )
    assert config.upstream is None and config.leeway_seconds == 10


def test_config_file_adds_projects_and_merges_the_env_project(
    tmp_path: Path, private_pem: str
) -> None:
    second_key = "behest_sk_live_" + secrets.token_hex(16)
    path = tmp_path / "gateway.json"
    path.write_text(
        json.dumps(
            {
                "reserved_user_ids": ["root"],
                "projects": [
                    {
                        "tenant_id": "tnt_local",
                        "project_id": "proj_local",
                        "slug": "Amber-Fox",
                        "signing_keys": {"kid_pub": _public_pem(private_pem)},
                        "limits": {"pro": {"rpm": 7}},
                    },
                    {
                        "tenant_id": "tnt_b",
                        "project_id": "proj_b",
                        "api_keys": [second_key],
                        "signing_keys": {"kid_b": "behest_pk_" + private_pem},
                        "allowed_origins": ["https://b.example"],
                    },
                ],
            }
        )
    )
    config = GatewayConfig.from_env(
        {
            "BEHEST_KEY": API_KEY,
            "BEHEST_GATEWAY_CONFIG": str(path),
            "BEHEST_GATEWAY_LIMITS": '{"free": {"rpm": 3}}',
        }
    )
    first, second = config.projects
    assert first.api_keys == (API_KEY,) and set(first.signing_keys) == {"kid_pub"}
    assert first.slug == "amber-fox"
    assert first.limit_for("pro").rpm == 7 and first.limit_for("free").rpm == 3
    assert second.api_keys == (second_key,)
    assert second.allowed_origins == ("https://b.example",)
    assert second.limit_for("free").rpm == 3
    assert config.reserved_user_ids == {"root"}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "not valid JSON"),
        ('{"projects": {}}', "projects must be a list"),
        ('{"projects": [{"project_id": "p"}]}', "projects[0].tenant_id"),
        ('{"projects": [{"tenant_id": "t", "project_id": "p", "colour": 1}]}', "colour"),
        (
            '{"projects": [{"tenant_id": "t", "project_id": "p", "api_keys": ["nope"]}]}',
            "projects[0].api_keys[0]",
        ),
        (
            '{"projects": [{"tenant_id": "t", "project_id": "p", "signing_keys": {"k": "nope"}}]}',
            "signing_keys['k']",
        ),
        ('{"projects": [{"tenant_id": "t", "project_id": "p", "slug": "a.b"}]}', "slug"),
        (
            '{"projects": [{"tenant_id": "t", "project_id": "p", "slug": "x"},'
            ' {"tenant_id": "t2", "project_id": "p2", "slug": "x"}]}',
            "slug 'x'",
        ),
    ],
)
def test_config_file_errors_name_the_entry(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(content)
    with pytest.raises(ValueError) as caught:
        GatewayConfig.from_env({"BEHEST_KEY": API_KEY, "BEHEST_GATEWAY_CONFIG": str(path)})
    assert str(caught.value).startswith("BEHEST_GATEWAY_CONFIG")
    assert fragment in str(caught.value)


def test_duplicate_kid_across_projects_is_refused(tmp_path: Path, private_pem: str) -> None:
    path = tmp_path / "gateway.json"
    entry = {"signing_keys": {"kid_same": _public_pem(private_pem)}}
    path.write_text(
        json.dumps(
            {
                "projects": [
                    {"tenant_id": "t1", "project_id": "p1", **entry},
                    {"tenant_id": "t2", "project_id": "p2", **entry},
                ]
            }
        )
    )
    with pytest.raises(ValueError, match="kid 'kid_same'"):
        GatewayConfig.from_env({"BEHEST_GATEWAY_CONFIG": str(path)})


def test_load_environ_reads_dotenv_under_the_environment(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("BEHEST_KEY=from-file\nBEHEST_KID=file-kid\n")
    merged = load_environ(dotenv, {"BEHEST_KEY": "from-env"})
    assert merged["BEHEST_KEY"] == "from-env"
    assert merged["BEHEST_KID"] == "file-kid"
    assert load_environ(tmp_path / "missing.env", {"A": "1"}) == {"A": "1"}


def test_parse_origins_normalises_case_and_skips_blanks() -> None:
    assert parse_origins(" HTTP://LocalHost:3000 ,, https://a.example ", source="X") == (
        "http://localhost:3000",
        "https://a.example",
    )
