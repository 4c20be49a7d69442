"""The app's configuration: read once from ``.env`` and the environment, validated, frozen.

The environment wins over ``.env``. An empty value counts as unset. Every problem stops
start-up with one :class:`SettingsError` line naming the variable and what is wrong; secret
values (the Behest key, credentials inside database or Redis URLs) are never echoed and are
wrapped in :class:`Secret` so ``repr``/``str`` mask them.

Variables (see ``.env.example``):

- ``BEHEST_KEY`` (required): ``behest_sk_live_…`` API key or ``behest_pk_…`` signing key.
- ``BEHEST_BASE_URL``: the Behest project URL; unset → the app starts the local gateway.
- ``BEHEST_PUBLIC_BASE_URL``: the gateway URL as the browser reaches it.
- ``BEHEST_KID``, ``BEHEST_TENANT_ID``, ``BEHEST_PROJECT_ID``: required with a signing key.
- ``BEHEST_AUDIENCE``: ``aud`` of locally signed tokens (the client's default when unset).
- ``BEHEST_TOKEN_TTL``: seconds a minted token lives (60 to 86400, default 900).
- ``BEHEST_ALLOWED_ORIGINS``: browser origins the gateway accepts.
- ``APP_ORIGINS``: the app's own public origins; the first is canonical.
- ``BEHEST_GATEWAY_HOST`` / ``BEHEST_GATEWAY_PORT``: where the embedded gateway listens.
- ``DATABASE_URL``, ``REDIS_URL``, ``APP_SESSION_TTL_HOURS``, ``APP_SECURE_COOKIES``.
- ``APP_DAILY_TOKEN_BUDGET_FREE`` / ``_PRO`` / ``_MAX``: tokens a user of that tier may use
  per UTC day, enforced by the app before sending (0 = no app budget).
- ``APP_CONVERSATION_TOKEN_CAP``: tokens one conversation may use in total (unset = no cap).
- ``APP_STREAM_IDLE_TIMEOUT_S``: a streaming reply that sends nothing for this long ends as
  timed out.
- ``APP_REGISTRATIONS_PER_HOUR``: accounts one client address may create per hour (0 = no
  limit).
- ``APP_TRUSTED_PROXIES``: addresses or networks of the proxies in front of the app, whose
  ``X-Forwarded-For`` names the client (empty = none: the connecting address is the client).

Modes:

- ``"local gateway"``: ``BEHEST_BASE_URL`` unset. The embedded gateway trusts the key: an
  ``sk_live`` key is its API key; a ``pk`` key (with kid/tenant/project) has its public half
  registered with it.
- ``"remote mint"``: base URL set, ``sk_live`` key; tokens come from the mint endpoint.
- ``"local signing"``: base URL set, ``pk`` key; tokens are signed in-process.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values

from behest_chat.behest import keys
from behest_chat.origins import OriginError, parse_origin_list

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Mode",
    "Secret",
    "Settings",
    "SettingsError",
    "env_file_path",
    "get_settings",
    "load_database_url",
    "load_settings",
]

Mode = Literal["local gateway", "remote mint", "local signing"]

DEFAULT_DATABASE_URL = "sqlite:///behest_chat.db"
_DEFAULT_ALLOWED_ORIGINS = "http://localhost:3000,http://localhost:5173"
_DEFAULT_APP_PORT = 3000
_DEFAULT_GATEWAY_HOST = "127.0.0.1"
_DEFAULT_GATEWAY_PORT = 8787
_DEFAULT_TOKEN_TTL = 900
_DEFAULT_SESSION_TTL_HOURS = 168
# The gateway's tier defaults (contract §6.1), so the app refuses before the gateway would.
_DEFAULT_DAILY_TOKEN_BUDGETS = {1: 50_000, 2: 2_000_000, 3: 20_000_000}
_MAX_TOKEN_BUDGET = 10**12
_DEFAULT_STREAM_IDLE_TIMEOUT_S = 60
_DEFAULT_REGISTRATIONS_PER_HOUR = 20
# Values the example file ships with; a real key must replace them.
_PLACEHOLDER_MARKERS = ("__GENERATE__", "REPLACE_ME")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_HOST_RE = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]+:[0-9A-Fa-f:.]*")
_DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
_REDIS_SCHEMES = ("redis", "rediss")


class SettingsError(ValueError):
    """A missing or bad setting. The message is one line naming the variable."""


@dataclass(frozen=True)
class Secret:
    """A secret string whose ``repr`` and ``str`` are masked; call :meth:`get` to use it."""

    _value: str = field(repr=False)

    def get(self) -> str:
        """Return the secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Build it with :func:`load_settings` or :func:`get_settings`.

    Attributes:
        behest_key: the Behest key (masked).
        key_kind: ``"api_key"`` for ``behest_sk_live_…``, ``"sign"`` for a signing key.
        behest_base_url: the Behest base URL, or ``None`` for the embedded local gateway.
        behest_public_base_url: the gateway URL as the browser reaches it.
        behest_kid: key id for signing mode.
        behest_tenant_id: tenant id for signing mode.
        behest_project_id: project id for signing mode.
        behest_audience: ``aud`` of locally signed tokens, or ``None`` for the client default.
        token_ttl: lifetime of minted tokens, in seconds.
        allowed_origins: browser origins the gateway accepts.
        app_origins: the app's own public origins; the first is canonical.
        gateway_host: where the embedded gateway listens.
        gateway_port: the embedded gateway's port.
        database_url: SQLAlchemy URL (masked: it may hold a password).
        redis_url: Redis URL or ``None`` (masked: it may hold a password).
        session_ttl_hours: lifetime of a sign-in.
        secure_cookies: whether the session cookie carries ``Secure``.
        stream_flush_ms: shortest gap between two pieces of a streaming reply (0 = every token).
        daily_token_budget_free: tokens a free-tier user may use per UTC day; 0 = no budget.
        daily_token_budget_pro: the same for the pro tier.
        daily_token_budget_max: the same for the max tier.
        conversation_token_cap: tokens one conversation may use in total, or ``None``.
        stream_idle_timeout_s: seconds without a stream chunk before a reply times out.
        registrations_per_hour: accounts one client address may create per hour; 0 = any.
        trusted_proxies: proxies whose ``X-Forwarded-For`` is believed (IPs or networks).
    """

    behest_key: Secret
    key_kind: Literal["api_key", "sign"]
    behest_base_url: str | None
    behest_public_base_url: str
    behest_kid: str | None
    behest_tenant_id: str | None
    behest_project_id: str | None
    behest_audience: str | None
    token_ttl: int
    allowed_origins: tuple[str, ...]
    app_origins: tuple[str, ...]
    gateway_host: str
    gateway_port: int
    database_url: Secret
    redis_url: Secret | None
    session_ttl_hours: int
    secure_cookies: bool
    stream_flush_ms: int = 50
    daily_token_budget_free: int = _DEFAULT_DAILY_TOKEN_BUDGETS[1]
    daily_token_budget_pro: int = _DEFAULT_DAILY_TOKEN_BUDGETS[2]
    daily_token_budget_max: int = _DEFAULT_DAILY_TOKEN_BUDGETS[3]
    conversation_token_cap: int | None = None
    stream_idle_timeout_s: int = _DEFAULT_STREAM_IDLE_TIMEOUT_S
    registrations_per_hour: int = _DEFAULT_REGISTRATIONS_PER_HOUR
    trusted_proxies: tuple[str, ...] = ()

    def daily_token_budget(self, tier: int) -> int:
        """The app's daily token budget for a tier id (1 free, 2 pro, 3 max; 0 = no budget).

        An unknown tier id gets the free tier's budget.
        """
        if tier == 3:
            return self.daily_token_budget_max
        if tier == 2:
            return self.daily_token_budget_pro
        return self.daily_token_budget_free

    @property
    def mode(self) -> Mode:
        """How tokens are obtained: "local gateway", "remote mint" or "local signing"."""
        if self.behest_base_url is None:
            return "local gateway"
        return "remote mint" if self.key_kind == "api_key" else "local signing"

    @property
    def uses_embedded_gateway(self) -> bool:
        """Whether the app starts the local gateway itself (``BEHEST_BASE_URL`` unset)."""
        return self.behest_base_url is None

    @property
    def effective_base_url(self) -> str:
        """The URL the server-side client talks to."""
        if self.behest_base_url is not None:
            return self.behest_base_url
        return f"http://{_url_host(self.gateway_host)}:{self.gateway_port}"

    @property
    def app_origin(self) -> str:
        """The canonical public origin of the app (first of ``APP_ORIGINS``)."""
        return self.app_origins[0]

    @property
    def key_fingerprint(self) -> str:
        """A short, non-reversible label for the key, safe to show and log."""
        return keys.fingerprint(self.behest_key.get())

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``BehestClient(**settings.client_kwargs())``.

        kid/tenant/project are passed only with a signing key; an API key does not use them.
        ``audience`` is added only when ``BEHEST_AUDIENCE`` is set and the key signs.
        """
        signing = self.key_kind == "sign"
        kwargs: dict[str, Any] = {
            "key": self.behest_key.get(),
            "base_url": self.effective_base_url,
            "kid": self.behest_kid if signing else None,
            "tenant_id": self.behest_tenant_id if signing else None,
            "project_id": self.behest_project_id if signing else None,
        }
        if signing and self.behest_audience is not None:
            kwargs["audience"] = self.behest_audience
        return kwargs


def load_settings(
    env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the settings.

    Args:
        env_file: a dotenv file to read first; ``None`` or a missing file reads nothing.
        environ: the environment; ``None`` means ``os.environ``. It wins over ``env_file``.

    Returns:
        The frozen settings.

    Raises:
        SettingsError: one line naming the first bad variable and what is wrong.
    """
    values = _merged_values(env_file, environ)
    reader = _Reader(values)

    raw_key = reader.get("BEHEST_KEY")
    if raw_key is None:
        raise SettingsError("BEHEST_KEY: missing; expected behest_sk_live_… or behest_pk_…")
    if any(marker in raw_key for marker in _PLACEHOLDER_MARKERS):
        raise SettingsError(
            "BEHEST_KEY: still the placeholder from .env.example; put a real key there"
        )
    try:
        parsed_key = keys.parse_key(raw_key, variable="BEHEST_KEY")
    except keys.KeyFormatError as exc:
        raise SettingsError(str(exc)) from None
    key_kind: Literal["api_key", "sign"] = (
        "api_key" if isinstance(parsed_key, keys.ApiKey) else "sign"
    )

    behest_base_url = reader.http_url("BEHEST_BASE_URL")
    behest_kid = reader.get("BEHEST_KID")
    behest_tenant_id = reader.get("BEHEST_TENANT_ID")
    behest_project_id = reader.get("BEHEST_PROJECT_ID")
    if key_kind == "sign":
        for name, value in (
            ("BEHEST_KID", behest_kid),
            ("BEHEST_TENANT_ID", behest_tenant_id),
            ("BEHEST_PROJECT_ID", behest_project_id),
        ):
            if value is None:
                raise SettingsError(f"{name}: required when BEHEST_KEY is a signing key")

    gateway_host = reader.host("BEHEST_GATEWAY_HOST", _DEFAULT_GATEWAY_HOST)
    gateway_port = reader.integer("BEHEST_GATEWAY_PORT", _DEFAULT_GATEWAY_PORT, 1, 65535)
    public_default = behest_base_url or f"http://localhost:{gateway_port}"
    behest_public_base_url = reader.http_url("BEHEST_PUBLIC_BASE_URL") or public_default

    app_origins = _app_origins(reader)
    secure_default = app_origins[0].startswith("https://")

    return Settings(
        behest_key=Secret(raw_key.strip()),
        key_kind=key_kind,
        behest_base_url=behest_base_url,
        behest_public_base_url=behest_public_base_url,
        behest_kid=behest_kid,
        behest_tenant_id=behest_tenant_id,
        behest_project_id=behest_project_id,
        behest_audience=reader.get("BEHEST_AUDIENCE"),
        token_ttl=reader.integer("BEHEST_TOKEN_TTL", _DEFAULT_TOKEN_TTL, 60, 86400),
        allowed_origins=reader.origins("BEHEST_ALLOWED_ORIGINS", _DEFAULT_ALLOWED_ORIGINS),
        app_origins=app_origins,
        gateway_host=gateway_host,
        gateway_port=gateway_port,
        database_url=Secret(_database_url(reader)),
        redis_url=_redis_url(reader),
        session_ttl_hours=reader.integer(
            "APP_SESSION_TTL_HOURS", _DEFAULT_SESSION_TTL_HOURS, 1, 24 * 366
        ),
        secure_cookies=reader.boolean("APP_SECURE_COOKIES", secure_default),
        stream_flush_ms=reader.integer("APP_STREAM_FLUSH_MS", 50, 0, 1000),
        daily_token_budget_free=reader.integer(
            "APP_DAILY_TOKEN_BUDGET_FREE", _DEFAULT_DAILY_TOKEN_BUDGETS[1], 0, _MAX_TOKEN_BUDGET
        ),
        daily_token_budget_pro=reader.integer(
            "APP_DAILY_TOKEN_BUDGET_PRO", _DEFAULT_DAILY_TOKEN_BUDGETS[2], 0, _MAX_TOKEN_BUDGET
        ),
        daily_token_budget_max=reader.integer(
            "APP_DAILY_TOKEN_BUDGET_MAX", _DEFAULT_DAILY_TOKEN_BUDGETS[3], 0, _MAX_TOKEN_BUDGET
        ),
        conversation_token_cap=reader.optional_integer(
            "APP_CONVERSATION_TOKEN_CAP", 1, _MAX_TOKEN_BUDGET
        ),
        stream_idle_timeout_s=reader.integer(
            "APP_STREAM_IDLE_TIMEOUT_S", _DEFAULT_STREAM_IDLE_TIMEOUT_S, 1, 3600
        ),
        trusted_proxies=reader.networks("APP_TRUSTED_PROXIES"),
        registrations_per_hour=reader.integer(
            "APP_REGISTRATIONS_PER_HOUR", _DEFAULT_REGISTRATIONS_PER_HOUR, 0, 100_000
        ),
    )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read on first use from the environment and the env file.

    The env file is ``$APP_ENV_FILE``, else ``./.env``. ``get_settings.cache_clear()``
    forgets the settings (tests change the environment).
    """
    return load_settings(env_file_path())


def env_file_path() -> str:
    """The env file the app reads: ``$APP_ENV_FILE``, else ``.env`` in the working directory."""
    return os.environ.get("APP_ENV_FILE") or ".env"


def load_app_origins(
    env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Read and validate ``APP_ORIGINS`` alone (``rxconfig.py`` needs only this).

    Unset, it is the app's port on both loopback names: ``http://localhost:<APP_PORT>`` and
    ``http://127.0.0.1:<APP_PORT>`` (``APP_PORT`` defaults to 3000).

    Raises:
        SettingsError: one line naming ``APP_ORIGINS`` or ``APP_PORT``.
    """
    return _app_origins(_Reader(_merged_values(env_file, environ)))


def _app_origins(reader: _Reader) -> tuple[str, ...]:
    port = reader.integer("APP_PORT", _DEFAULT_APP_PORT, 1, 65535)
    return reader.origins("APP_ORIGINS", f"http://localhost:{port},http://127.0.0.1:{port}")


def load_database_url(
    env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None
) -> str:
    """Read and validate ``DATABASE_URL`` alone.

    The database tools (migrations, the accounts CLI) need only this, so they keep working
    while, say, the Behest key is not set up yet. Same sources and rules as
    :func:`load_settings`.

    Raises:
        SettingsError: one line naming ``DATABASE_URL``.
    """
    return _database_url(_Reader(_merged_values(env_file, environ)))


def _merged_values(
    env_file: str | Path | None, environ: Mapping[str, str] | None
) -> dict[str, str]:
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


class _Reader:
    """Typed accessors over the merged values; each raises a one-line SettingsError."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def get(self, name: str) -> str | None:
        value = self._values.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise SettingsError(f"{name}: {text!r} is not a whole number") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: {value} is out of range; expected {low} to {high}")
        return value

    def optional_integer(self, name: str, low: int, high: int) -> int | None:
        if self.get(name) is None:
            return None
        return self.integer(name, low, low, high)

    def boolean(self, name: str, default: bool) -> bool:
        text = self.get(name)
        if text is None:
            return default
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise SettingsError(f"{name}: {text!r} is not a boolean; expected true or false")

    def http_url(self, name: str) -> str | None:
        text = self.get(name)
        if text is None:
            return None
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise SettingsError(f"{name}: expected an http:// or https:// URL")
        try:
            parts.port  # noqa: B018 - parsing the port validates it
        except ValueError:
            raise SettingsError(f"{name}: the port is not a number from 0 to 65535") from None
        if not parts.hostname:
            raise SettingsError(f"{name}: the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise SettingsError(f"{name}: the URL must not contain a user name or password")
        if parts.query or parts.fragment:
            raise SettingsError(f"{name}: the URL must not have a query or fragment")
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    def host(self, name: str, default: str) -> str:
        text = self.get(name)
        if text is None:
            return default
        if not _HOST_RE.fullmatch(text):
            raise SettingsError(f"{name}: {text!r} is not a host name or IP address")
        return text

    def networks(self, name: str) -> tuple[str, ...]:
        found = []
        for item in filter(None, (part.strip() for part in (self.get(name) or "").split(","))):
            try:
                found.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise SettingsError(
                    f"{name}: {item!r} is not an IP address or network (e.g. 10.0.0.0/8)"
                ) from None
        return tuple(found)

    def origins(self, name: str, default: str) -> tuple[str, ...]:
        try:
            return parse_origin_list(self.get(name) or default, name)
        except OriginError as exc:
            raise SettingsError(str(exc)) from None


def _database_url(reader: _Reader) -> str:
    url = reader.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _DATABASE_SCHEMES:
        raise SettingsError(
            "DATABASE_URL: expected sqlite:///path, postgresql://… or postgresql+psycopg://…"
        )
    if url == f"{scheme}://":
        raise SettingsError("DATABASE_URL: the URL names no database")
    return url


def _redis_url(reader: _Reader) -> Secret | None:
    url = reader.get("REDIS_URL")
    if url is None:
        return None
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _REDIS_SCHEMES or not urlsplit(url).hostname:
        raise SettingsError("REDIS_URL: expected redis://host[:port] or rediss://host[:port]")
    return Secret(url)


def _url_host(host: str) -> str:
    """The host to connect to, as it appears in a URL (IPv6 literals need brackets)."""
    # A gateway listening on every interface is reached through loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def main(argv: list[str] | None = None) -> int:
    """``python -m behest_chat.settings check | app-port``.

    ``check`` validates the settings and prints one line: exit status 0 when they are
    usable, 1 with the one-line problem on stderr. ``app-port`` prints ``APP_PORT``.
    """
    args = sys.argv[1:] if argv is None else argv
    if args not in (["check"], ["app-port"]):
        print("usage: python -m behest_chat.settings check | app-port", file=sys.stderr)
        return 2
    try:
        if args == ["app-port"]:
            reader = _Reader(_merged_values(env_file_path(), None))
            print(reader.integer("APP_PORT", _DEFAULT_APP_PORT, 1, 65535))
            return 0
        settings = load_settings(env_file_path())
    except SettingsError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 1
    print(
        f"settings OK: {settings.mode}, key {settings.key_fingerprint}, "
        f"Behest at {settings.effective_base_url}, app at {settings.app_origin}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
