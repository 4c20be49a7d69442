"""Gateway settings, read once from the environment (and .env) into a frozen object.

Variables (copy into .env.example; empty means unset):

    # behest_sk_live_… (trusted on mint) or behest_pk_… (public half trusted for BEHEST_KID)
    BEHEST_KEY=
    # key id of a behest_pk_ key (needed when BEHEST_KEY is behest_pk_…)
    BEHEST_KID=
    # tenant and project of the default project (defaults tnt_local / proj_local)
    BEHEST_TENANT_ID=
    BEHEST_PROJECT_ID=
    # browser origins allowed by CORS, exact scheme://host[:port], comma-separated
    BEHEST_ALLOWED_ORIGINS=http://localhost:3000,http://localhost:5173
    # required `aud` claim of every token (same variable the Behest SDKs sign with)
    BEHEST_AUDIENCE=behest
    # where `python -m behest_chat.gateway` and the embedded gateway listen
    BEHEST_GATEWAY_HOST=127.0.0.1
    BEHEST_GATEWAY_PORT=8787
    # JSON file with more projects, keys, origins and limits (see below)
    BEHEST_GATEWAY_CONFIG=
    # private key the gateway mints with (PEM, behest_pk_… or base64 PEM); unset → new each start
    BEHEST_GATEWAY_SIGNING_KEY=
    # `iss` of minted tokens (not checked on incoming tokens)
    BEHEST_GATEWAY_ISSUER=https://api.behest.app
    # clock-skew leeway for exp/nbf/iat in seconds, 0-30
    BEHEST_GATEWAY_LEEWAY=10
    # tier limit overrides (JSON; fields rpm, requests_per_day, tokens_per_day per tier)
    # e.g. {"free": {"rpm": 10, "requests_per_day": 100, "tokens_per_day": 50000}}
    BEHEST_GATEWAY_LIMITS=
    # offline model pacing between streamed tokens in ms (0 = as fast as possible)
    BEHEST_GATEWAY_TOKEN_DELAY_MS=20
    # OpenAI-compatible upstream instead of the offline model (base URL including /v1)
    BEHEST_GATEWAY_UPSTREAM_URL=
    BEHEST_GATEWAY_UPSTREAM_KEY=
    BEHEST_GATEWAY_UPSTREAM_MODEL=
    # 1 enables the loopback-only fault switch under /_gateway/ (tests and demos)
    BEHEST_GATEWAY_FAULTS=0
    # Redis for the tier counters, so several gateway processes enforce one limit per user
    # (the app's REDIS_URL); empty = counters in this process
    REDIS_URL=
    # prefix of the gateway's Redis keys
    BEHEST_GATEWAY_REDIS_PREFIX=behest_gateway:

The file named by ``BEHEST_GATEWAY_CONFIG``::

    {"reserved_user_ids": ["admin", "dashboard-service", "system"],
     "projects": [{"tenant_id": "tnt_a", "project_id": "proj_a", "slug": "amber-fox-042",
                   "api_keys": ["behest_sk_live_…"],
                   "signing_keys": {"kid_1": "<PEM public or private key, or behest_pk_…>"},
                   "allowed_origins": ["http://localhost:3000"],
                   "limits": {"free": {"rpm": 5}}}]}

The project built from ``BEHEST_KEY`` comes first and is the default (used when the Host
header names no project slug); a file project with the same tenant and project id is merged
into it. Every bad value stops start-up with one ``ValueError`` line naming the variable;
key material is never echoed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dotenv import dotenv_values

from behest_chat.behest.keys import ApiKey, KeyFormatError, SigningKey, parse_key
from behest_chat.gateway.tiers import (
    DEFAULT_LIMITS,
    LimitStore,
    MemoryLimitStore,
    RedisLimitStore,
    TierLimit,
    merge_limits,
)

__all__ = [
    "DEFAULT_ALLOWED_ORIGINS",
    "GatewayConfig",
    "Project",
    "UpstreamConfig",
    "load_environ",
    "parse_origins",
]

DEFAULT_ALLOWED_ORIGINS = ("http://localhost:3000", "http://localhost:5173")
DEFAULT_TENANT_ID = "tnt_local"
DEFAULT_PROJECT_ID = "proj_local"
DEFAULT_RESERVED_USER_IDS = frozenset({"admin", "dashboard-service", "system"})
MAX_LEEWAY_SECONDS = 30
DEFAULT_REDIS_PREFIX = "behest_gateway:"
_REDIS_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class Project:
    """One tenant project the gateway serves.

    Attributes:
        tenant_id: ``tid`` tokens must carry.
        project_id: ``pid`` tokens must carry.
        slug: first Host label that selects this project (``{slug}.behest.app``), if any.
        api_keys: ``behest_sk_live_`` keys accepted on mint (never printed).
        signing_keys: kid → RSA public key of tenant keys that may sign tokens directly.
        allowed_origins: exact browser origins for CORS.
        limits: tier name → limits.
    """

    tenant_id: str
    project_id: str
    slug: str | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    signing_keys: Mapping[str, rsa.RSAPublicKey] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    allowed_origins: tuple[str, ...] = DEFAULT_ALLOWED_ORIGINS
    limits: Mapping[str, TierLimit] = field(default_factory=lambda: MappingProxyType({}))

    def limit_for(self, tier: str) -> TierLimit:
        """The limits of ``tier`` in this project (defaults when not overridden)."""
        return self.limits.get(tier) or DEFAULT_LIMITS[tier]


@dataclass(frozen=True)
class UpstreamConfig:
    """An OpenAI-compatible server the gateway relays to.

    Attributes:
        url: base URL including ``/v1`` (``/chat/completions`` is appended).
        key: Bearer key sent upstream, or None (never printed).
        model: model name sent upstream; also the model the gateway lists.
    """

    url: str
    model: str
    key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs, validated.

    Attributes:
        projects: the served projects; the first is the default.
        host: listen address.
        port: listen port (0 picks a free one).
        audience: required ``aud`` claim.
        issuer: ``iss`` of minted tokens.
        leeway_seconds: clock-skew leeway for exp/nbf/iat.
        signing_key: private key used to mint, or None for a fresh one per start.
        token_delay_ms: offline model pacing between tokens.
        upstream: relay target, or None for the offline model.
        faults_enabled: whether ``/_gateway/*`` exists.
        reserved_user_ids: ``user_id`` values refused on mint.
        max_body_bytes: request bodies above this answer 413.
        redis_url: Redis for the tier counters, or None to count in the process.
        redis_prefix: prefix of the gateway's Redis keys.
    """

    projects: tuple[Project, ...]
    host: str = "127.0.0.1"
    port: int = 8787
    audience: str = "behest"
    issuer: str = "https://api.behest.app"
    leeway_seconds: int = 10
    signing_key: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    token_delay_ms: float = 20.0
    upstream: UpstreamConfig | None = None
    faults_enabled: bool = False
    reserved_user_ids: frozenset[str] = DEFAULT_RESERVED_USER_IDS
    max_body_bytes: int = 1024 * 1024
    redis_url: str | None = field(default=None, repr=False)
    redis_prefix: str = DEFAULT_REDIS_PREFIX

    def limit_store(self) -> LimitStore:
        """The counter backend: in Redis when ``redis_url`` is set, else in this process."""
        if self.redis_url is None:
            return MemoryLimitStore()
        from redis.asyncio import Redis

        client = Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
        return RedisLimitStore(client, self.redis_prefix)

    @property
    def default_project(self) -> Project:
        """The project used when the Host header names no slug."""
        return self.projects[0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GatewayConfig:
        """Build the config from environment variables (see the module docstring).

        Args:
            environ: variables, e.g. ``load_environ()`` or ``os.environ``.

        Returns:
            The validated config.

        Raises:
            ValueError: one line naming the variable and what is wrong.
        """
        env = {name: value.strip() for name, value in environ.items() if value and value.strip()}
        global_limits = merge_limits(
            DEFAULT_LIMITS, _json_env(env, "BEHEST_GATEWAY_LIMITS"), source="BEHEST_GATEWAY_LIMITS"
        )
        origins = parse_origins(
            env.get("BEHEST_ALLOWED_ORIGINS", ",".join(DEFAULT_ALLOWED_ORIGINS)),
            source="BEHEST_ALLOWED_ORIGINS",
        )
        projects: list[Project] = []
        env_project = _project_from_env(env, origins, global_limits)
        if env_project is not None:
            projects.append(env_project)
        reserved = DEFAULT_RESERVED_USER_IDS
        if "BEHEST_GATEWAY_CONFIG" in env:
            file_projects, reserved = _read_config_file(
                env["BEHEST_GATEWAY_CONFIG"], origins, global_limits
            )
            for project in file_projects:
                projects = _add_project(projects, project)
        if not any(p.api_keys or p.signing_keys for p in projects):
            raise ValueError(
                "BEHEST_KEY: no key configured; set BEHEST_KEY (behest_sk_live_… or behest_pk_…) "
                "or list projects in BEHEST_GATEWAY_CONFIG"
            )
        _check_unique(projects)
        upstream = _upstream_from_env(env)
        return cls(
            projects=tuple(projects),
            host=env.get("BEHEST_GATEWAY_HOST", "127.0.0.1"),
            port=_int_env(env, "BEHEST_GATEWAY_PORT", 8787, low=0, high=65535),
            audience=env.get("BEHEST_AUDIENCE", "behest"),
            issuer=env.get("BEHEST_GATEWAY_ISSUER", "https://api.behest.app"),
            leeway_seconds=_int_env(
                env, "BEHEST_GATEWAY_LEEWAY", 10, low=0, high=MAX_LEEWAY_SECONDS
            ),
            signing_key=_gateway_signing_key(env),
            token_delay_ms=_float_env(env, "BEHEST_GATEWAY_TOKEN_DELAY_MS", 20.0, high=10_000.0),
            upstream=upstream,
            faults_enabled=_bool_env(env, "BEHEST_GATEWAY_FAULTS"),
            reserved_user_ids=reserved,
            redis_url=_redis_url_env(env),
            redis_prefix=_redis_prefix_env(env),
        )


def load_environ(
    env_file: str | os.PathLike[str] | None = ".env", environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Merge a .env file under the process environment (the environment wins).

    Args:
        env_file: path of the .env file; a missing file or None means no file.
        environ: the environment; defaults to ``os.environ``.

    Returns:
        The merged variables.
    """
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


def parse_origins(value: Any, *, source: str) -> tuple[str, ...]:
    """Parse an allowlist of exact origins (``scheme://host[:port]``).

    Args:
        value: comma-separated string or a list of strings.
        source: the variable or field, for error messages.

    Returns:
        Lower-cased origins, as browsers serialise them.

    Raises:
        ValueError: an entry is a wildcard, has a path, or lacks scheme/host.
    """
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"{source}: must be a list of origins")
    origins: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{source}: every origin must be a string")
        origin = item.strip().lower()
        if not origin:
            continue
        if "*" in origin:
            raise ValueError(f"{source}: wildcards are not allowed; list exact origins")
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{source}: {origin!r} is not scheme://host[:port]")
        if parts.path or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{source}: {origin!r} must not have a path or trailing slash")
        origins.append(origin)
    return tuple(origins)


def _project_from_env(
    env: Mapping[str, str], origins: tuple[str, ...], limits: Mapping[str, TierLimit]
) -> Project | None:
    raw_key = env.get("BEHEST_KEY")
    if raw_key is None:
        return None
    try:
        key = parse_key(raw_key, variable="BEHEST_KEY")
    except KeyFormatError as exc:
        raise ValueError(str(exc)) from None
    api_keys: tuple[str, ...] = ()
    signing: dict[str, rsa.RSAPublicKey] = {}
    if isinstance(key, ApiKey):
        api_keys = (key.secret,)
    else:
        kid = env.get("BEHEST_KID")
        if kid is None:
            raise ValueError("BEHEST_KID: required when BEHEST_KEY is a behest_pk_ signing key")
        signing[kid] = key.public_key
    return Project(
        tenant_id=env.get("BEHEST_TENANT_ID", DEFAULT_TENANT_ID),
        project_id=env.get("BEHEST_PROJECT_ID", DEFAULT_PROJECT_ID),
        api_keys=api_keys,
        signing_keys=MappingProxyType(signing),
        allowed_origins=origins,
        limits=MappingProxyType(dict(limits)),
    )


def _read_config_file(
    path: str, origins: tuple[str, ...], limits: Mapping[str, TierLimit]
) -> tuple[list[Project], frozenset[str]]:
    var = "BEHEST_GATEWAY_CONFIG"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{var}: cannot read {path!r} ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{var}: {path!r} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{var}: top level must be a JSON object")
    reserved = DEFAULT_RESERVED_USER_IDS
    if "reserved_user_ids" in data:
        ids = data["reserved_user_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{var}: reserved_user_ids must be a list of strings")
        reserved = frozenset(ids)
    raw_projects = data.get("projects", [])
    if not isinstance(raw_projects, list):
        raise ValueError(f"{var}: projects must be a list")
    projects = [
        _project_from_json(raw, f"{var} projects[{index}]", origins, limits)
        for index, raw in enumerate(raw_projects)
    ]
    return projects, reserved


def _project_from_json(
    raw: Any, where: str, origins: tuple[str, ...], limits: Mapping[str, TierLimit]
) -> Project:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be an object")
    known = {
        "tenant_id",
        "project_id",
        "slug",
        "api_keys",
        "signing_keys",
        "allowed_origins",
        "limits",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    ids = {}
    for name in ("tenant_id", "project_id"):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}.{name}: must be a non-empty string")
        ids[name] = value.strip()
    slug = raw.get("slug")
    if slug is not None and (not isinstance(slug, str) or not slug.strip() or "." in slug):
        raise ValueError(f"{where}.slug: must be a single host label such as amber-fox-042")
    api_keys: list[str] = []
    raw_keys = raw.get("api_keys", [])
    if not isinstance(raw_keys, list):
        raise ValueError(f"{where}.api_keys: must be a list")
    for index, item in enumerate(raw_keys):
        name = f"{where}.api_keys[{index}]"
        try:
            key = parse_key(item if isinstance(item, str) else "", variable=name)
        except KeyFormatError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(key, ApiKey):
            raise ValueError(f"{name}: must be a behest_sk_live_ API key")
        api_keys.append(key.secret)
    raw_signing = raw.get("signing_keys", {})
    if not isinstance(raw_signing, dict):
        raise ValueError(f"{where}.signing_keys: must be an object of kid → key")
    signing = {
        kid: _public_key(value, f"{where}.signing_keys[{kid!r}]")
        for kid, value in raw_signing.items()
    }
    project_origins = origins
    if "allowed_origins" in raw:
        project_origins = parse_origins(raw["allowed_origins"], source=f"{where}.allowed_origins")
    project_limits = merge_limits(limits, raw.get("limits"), source=f"{where}.limits")
    return Project(
        tenant_id=ids["tenant_id"],
        project_id=ids["project_id"],
        slug=slug.strip().lower() if slug else None,
        api_keys=tuple(api_keys),
        signing_keys=MappingProxyType(signing),
        allowed_origins=project_origins,
        limits=MappingProxyType(project_limits),
    )


def _public_key(value: Any, where: str) -> rsa.RSAPublicKey:
    """Accept a public PEM, a JWK object, or any private form parse_key knows."""
    if isinstance(value, dict):
        from jwt.algorithms import RSAAlgorithm

        try:
            key = RSAAlgorithm.from_jwk(value)
        except Exception:
            raise ValueError(f"{where}: JWK could not be read as an RSA key") from None
        if isinstance(key, rsa.RSAPrivateKey):
            return key.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            return key
        raise ValueError(f"{where}: JWK must be an RSA key")
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a PEM string, behest_pk_ key or JWK object")
    if "PUBLIC KEY-----" in value:
        try:
            public = serialization.load_pem_public_key(value.strip().encode())
        except ValueError:
            raise ValueError(f"{where}: public PEM could not be read") from None
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError(f"{where}: must be an RSA key (RS256)")
        return public
    try:
        parsed = parse_key(value, variable=where)
    except KeyFormatError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(parsed, SigningKey):
        raise ValueError(f"{where}: must be a signing key, not an API key")
    return parsed.public_key


def _add_project(projects: list[Project], new: Project) -> list[Project]:
    """Append ``new``, or merge it into an existing project with the same ids."""
    for index, old in enumerate(projects):
        if (old.tenant_id, old.project_id) == (new.tenant_id, new.project_id):
            merged = Project(
                tenant_id=old.tenant_id,
                project_id=old.project_id,
                slug=new.slug or old.slug,
                api_keys=old.api_keys + tuple(k for k in new.api_keys if k not in old.api_keys),
                signing_keys=MappingProxyType({**old.signing_keys, **new.signing_keys}),
                allowed_origins=new.allowed_origins,
                limits=new.limits,
            )
            return [*projects[:index], merged, *projects[index + 1 :]]
    return [*projects, new]


def _check_unique(projects: list[Project]) -> None:
    kids: set[str] = set()
    slugs: set[str] = set()
    keys: set[str] = set()
    for project in projects:
        for kid in project.signing_keys:
            if kid in kids:
                raise ValueError(f"BEHEST_GATEWAY_CONFIG: kid {kid!r} is registered twice")
            kids.add(kid)
        if project.slug:
            if project.slug in slugs:
                raise ValueError(f"BEHEST_GATEWAY_CONFIG: slug {project.slug!r} is used twice")
            slugs.add(project.slug)
        for key in project.api_keys:
            if key in keys:
                raise ValueError("BEHEST_GATEWAY_CONFIG: one API key is listed for two projects")
            keys.add(key)


def _upstream_from_env(env: Mapping[str, str]) -> UpstreamConfig | None:
    url = env.get("BEHEST_GATEWAY_UPSTREAM_URL")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "BEHEST_GATEWAY_UPSTREAM_URL: must be an http(s) URL such as http://127.0.0.1:11434/v1"
        )
    model = env.get("BEHEST_GATEWAY_UPSTREAM_MODEL")
    if model is None:
        raise ValueError(
            "BEHEST_GATEWAY_UPSTREAM_MODEL: required when BEHEST_GATEWAY_UPSTREAM_URL is set"
        )
    return UpstreamConfig(
        url=url.rstrip("/"), model=model, key=env.get("BEHEST_GATEWAY_UPSTREAM_KEY")
    )


def _gateway_signing_key(env: Mapping[str, str]) -> rsa.RSAPrivateKey | None:
    raw = env.get("BEHEST_GATEWAY_SIGNING_KEY")
    if raw is None:
        return None
    try:
        key = parse_key(raw, variable="BEHEST_GATEWAY_SIGNING_KEY")
    except KeyFormatError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(key, SigningKey):
        raise ValueError("BEHEST_GATEWAY_SIGNING_KEY: must be an RSA private key, not an API key")
    return key.private_key


def _json_env(env: Mapping[str, str], name: str) -> Any:
    if name not in env:
        return None
    try:
        return json.loads(env[name])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _int_env(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    if name not in env:
        return default
    try:
        value = int(env[name])
    except ValueError:
        raise ValueError(f"{name}: must be an integer, got {env[name]!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _float_env(env: Mapping[str, str], name: str, default: float, *, high: float) -> float:
    if name not in env:
        return default
    try:
        value = float(env[name])
    except ValueError:
        raise ValueError(f"{name}: must be a number, got {env[name]!r}") from None
    if not 0 <= value <= high:
        raise ValueError(f"{name}: must be between 0 and {high:g}, got {value:g}")
    return value


def _bool_env(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "0").lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}: must be 1 or 0, got {env[name]!r}")


def _redis_url_env(env: Mapping[str, str]) -> str | None:
    url = env.get("REDIS_URL")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or (
        parts.scheme != "unix" and not parts.hostname
    ):
        raise ValueError("REDIS_URL: expected redis://host[:port][/db] or rediss://…")
    return url


def _redis_prefix_env(env: Mapping[str, str]) -> str:
    prefix = env.get("BEHEST_GATEWAY_REDIS_PREFIX", DEFAULT_REDIS_PREFIX)
    if not _REDIS_PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            "BEHEST_GATEWAY_REDIS_PREFIX: expected 1 to 64 letters, digits or _ . : -"
        )
    return prefix
