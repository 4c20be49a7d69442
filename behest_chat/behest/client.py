"""``BehestClient``: per-user tokens and chat completions against a Behest gateway.

Two key modes, chosen by the key string (see ``keys.py``):

- ``api_key`` (``behest_sk_live_…``): tokens are minted by ``POST {base_url}/v1/auth/mint``.
- ``sign`` (``behest_pk_…`` or a base64 PEM): tokens are RS256-signed locally with the
  tenant key; ``kid``, ``tenant_id`` and ``project_id`` are then required.

Chat calls mint (or reuse) a token for ``user_id`` and send it as the Bearer. A 401 drops
that token and the request is sent once more with a fresh one. 5xx answers and failed
connections are retried at most ``max_retries`` times with exponential backoff, only before
any byte of a successful answer was received; 4xx answers (402, 403, 429 …) never are.
All httpx failures are mapped to the tree in ``errors.py`` here and in ``streaming.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload

import httpx

from behest_chat.behest import errors
from behest_chat.behest.cache import TokenCache
from behest_chat.behest.keys import ApiKey, KeyFormatError, SigningKey, fingerprint, parse_key
from behest_chat.behest.streaming import ChatStream
from behest_chat.behest.tokens import (
    MintedToken,
    Tier,
    mint_body,
    normalize_tier,
    sign_token,
    token_from_mint_response,
    validate_ttl,
    validate_user_id,
)
from behest_chat.behest.transport import AiohttpTransport

__all__ = ["DEFAULT_TIMEOUT", "BehestClient", "Chat", "Completions"]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
DEFAULT_ISSUER = "https://api.behest.ai"
DEFAULT_AUDIENCE = "behest"
MINT_PATH = "/v1/auth/mint"
CHAT_PATH = "/v1/chat/completions"
_MAX_HEADER_ID_CHARS = 255

Mode = Literal["api_key", "sign"]


class BehestClient:
    """Async client for one Behest project; keep one per process and ``aclose()`` it.

    Attributes:
        mode: ``"api_key"`` (remote mint) or ``"sign"`` (local RS256 signing).
        base_url: the gateway's base URL, without a trailing slash.
        cache: the per-user ``TokenCache`` behind ``token_for`` and chat calls.
        chat: ``client.chat.completions.create(...)``, OpenAI style.
    """

    def __init__(
        self,
        key: str,
        base_url: str,
        *,
        kid: str | None = None,
        tenant_id: str | None = None,
        project_id: str | None = None,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        cache_size: int = 1024,
        default_ttl: int = 900,
        max_retries: int = 2,
        retry_backoff: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Check the configuration and prepare the HTTP connection pool.

        Args:
            key: ``BEHEST_KEY`` in any accepted form; never echoed in errors or repr.
            base_url: ``BEHEST_BASE_URL``, e.g. ``http://127.0.0.1:8787``.
            kid: ``BEHEST_KID``, the signing key id (sign mode only).
            tenant_id: ``BEHEST_TENANT_ID`` (sign mode only).
            project_id: ``BEHEST_PROJECT_ID`` (sign mode only).
            issuer: ``iss`` of self-signed tokens.
            audience: ``aud`` of self-signed tokens.
            timeout: httpx timeout (default: connect 5 s, read/write/pool 60 s).
            cache_size: most users whose tokens are kept.
            default_ttl: lifetime of tokens minted by ``token_for`` and chat calls.
            max_retries: retries for 5xx answers and failed connections (0 disables).
            retry_backoff: first backoff delay in seconds; doubled on each retry.
            clock: Unix-seconds clock the token cache judges freshness by.

        Raises:
            errors.BehestConfigError: one line naming the variable and what is wrong.
        """
        try:
            parsed = parse_key(key, variable="BEHEST_KEY")
        except KeyFormatError as exc:
            raise errors.BehestConfigError(str(exc), code="bad_key_format") from None
        self._key: ApiKey | SigningKey = parsed
        self.mode: Mode = "api_key" if isinstance(parsed, ApiKey) else "sign"
        self.base_url = _check_base_url(base_url)
        if self.mode == "sign":
            self._kid = _require("BEHEST_KID", kid)
            self._tenant_id = _require("BEHEST_TENANT_ID", tenant_id)
            self._project_id = _require("BEHEST_PROJECT_ID", project_id)
        self._issuer = issuer
        self._audience = audience
        try:
            self.default_ttl = validate_ttl(default_ttl)
            self.cache = TokenCache(cache_size, clock=clock)
        except ValueError as exc:
            raise errors.BehestConfigError(str(exc), code="bad_config") from None
        if max_retries < 0:
            raise errors.BehestConfigError(f"max_retries: must not be negative, got {max_retries}")
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=AiohttpTransport(max_connections=500),
            headers={"User-Agent": "behest-chat"},
        )
        self.chat = Chat(self)

    def __repr__(self) -> str:
        secret = self._key.secret if isinstance(self._key, ApiKey) else self._key.public_pem()
        return (
            f"BehestClient(mode={self.mode!r}, base_url={self.base_url!r}, "
            f"key={fingerprint(secret)!r})"
        )

    async def __aenter__(self) -> BehestClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def mint(
        self,
        user_id: str,
        tier: Tier = None,
        ttl: int | None = None,
        session_id: str | None = None,
    ) -> MintedToken:
        """Mint a new token for ``user_id`` (never cached; one network call in api_key mode).

        Args:
            user_id: the end user; 1 to 255 characters, not a reserved id.
            tier: 1/2/3 or ``"free"``/``"pro"``/``"max"``; None lets the gateway default.
            ttl: lifetime in seconds, 60 to 86400 (default ``default_ttl``).
            session_id: bound into the token; a UUIDv4 when None.

        Raises:
            errors.InvalidArgumentError: before any network call, for bad arguments.
            errors.BehestAPIError: the mint endpoint refused (401 bad key, 400 …).
            errors.BehestConnectionError: the gateway could not be reached.
        """
        user_id = validate_user_id(user_id)
        numeric_tier = normalize_tier(tier)
        ttl = validate_ttl(self.default_ttl if ttl is None else ttl)
        session_id = _check_header_id("session_id", session_id) or str(uuid.uuid4())
        return await self._mint(user_id, numeric_tier, ttl, session_id)

    async def token_for(self, user_id: str, tier: Tier = None) -> MintedToken:
        """The user's cached token, minted when missing, expiring (≤ 60 s) or of another tier.

        Concurrent callers for the same user and tier share one mint.

        Raises:
            Same as ``mint``.
        """
        user_id = validate_user_id(user_id)
        numeric_tier = normalize_tier(tier)
        cached = self.cache.get(user_id, numeric_tier)
        if cached is not None:
            return cached
        return await self.cache.get_or_mint(
            user_id,
            numeric_tier,
            lambda: self._mint(user_id, numeric_tier, self.default_ttl, str(uuid.uuid4())),
        )

    def invalidate(self, user_id: str, token: str | None = None) -> bool:
        """Forget ``user_id``'s cached token (only if it is ``token``, when given)."""
        return self.cache.invalidate(user_id, token)

    async def _mint(self, user_id: str, tier: int | None, ttl: int, session_id: str) -> MintedToken:
        if isinstance(self._key, SigningKey):
            return sign_token(
                self._key.private_key,
                kid=self._kid,
                tenant_id=self._tenant_id,
                project_id=self._project_id,
                user_id=user_id,
                tier=tier,
                ttl=ttl,
                session_id=session_id,
                issuer=self._issuer,
                audience=self._audience,
            )
        sent_at = time.time()
        response = await self._post(
            MINT_PATH,
            body=mint_body(user_id, tier, ttl, session_id),
            headers={
                "Authorization": f"Bearer {self._key.secret}",
                "Accept": "application/json",
            },
            stream=False,
        )
        trace_id = response.headers.get("x-trace-id")
        return token_from_mint_response(
            _json_body(response, trace_id),
            user_id=user_id,
            tier=tier,
            requested_ttl=ttl,
            session_id=session_id,
            sent_at=sent_at,
            trace_id=trace_id,
        )

    async def _chat_request(
        self,
        *,
        body: dict[str, Any],
        stream: bool,
        user_id: str,
        tier: int | None,
        session_id: str,
        thread_id: str | None,
        timeout: httpx.Timeout | float | None = None,
    ) -> httpx.Response:
        """POST the chat body with the user's token; on 401 re-mint and try once more."""
        headers = {
            "Accept": "text/event-stream" if stream else "application/json",
            "X-Session-Id": session_id,
        }
        if thread_id is not None:
            headers["X-Thread-Id"] = thread_id
        token = await self.token_for(user_id, tier)
        try:
            return await self._post(
                CHAT_PATH,
                body=body,
                headers={**headers, "Authorization": f"Bearer {token.token}"},
                stream=stream,
                timeout=timeout,
            )
        except errors.AuthenticationError:
            self.cache.invalidate(user_id, token.token)
        token = await self.token_for(user_id, tier)
        return await self._post(
            CHAT_PATH,
            body=body,
            headers={**headers, "Authorization": f"Bearer {token.token}"},
            stream=stream,
            timeout=timeout,
        )

    async def _post(
        self,
        path: str,
        *,
        body: dict[str, Any],
        headers: Mapping[str, str],
        stream: bool,
        timeout: httpx.Timeout | float | None = None,
    ) -> httpx.Response:
        """Send a POST; return a 2xx response (body unread when ``stream``) or raise.

        Retries 5xx answers and failed connections, never anything after a 2xx status.
        """
        attempt = 0
        while True:
            request = self._http.build_request(
                "POST",
                path,
                json=body,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = await self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt < self._max_retries:
                    await self._backoff(attempt)
                    attempt += 1
                    continue
                raise errors.ConnectError(
                    f"could not connect to {_origin(self.base_url)} ({type(exc).__name__})"
                ) from None
            except httpx.TimeoutException as exc:
                raise _timeout_error(exc) from None
            except httpx.TransportError as exc:
                raise errors.BehestConnectionError(
                    f"no answer from {_origin(self.base_url)} ({type(exc).__name__})"
                ) from None
            if response.status_code < 400:
                if not stream:
                    await _read_body(response)
                return response
            error = errors.error_from_response(
                response.status_code, response.headers, await _read_body(response)
            )
            if isinstance(error, errors.ServerError) and attempt < self._max_retries:
                await self._backoff(attempt)
                attempt += 1
                continue
            raise error

    async def _backoff(self, attempt: int) -> None:
        # Jitter keeps many clients that failed together from retrying together.
        delay = self._retry_backoff * (2**attempt) * (1 + random.random() / 4)
        await asyncio.sleep(delay)


class Completions:
    """``client.chat.completions``: OpenAI-style chat completions for one end user."""

    def __init__(self, client: BehestClient) -> None:
        """Bind to ``client``."""
        self._client = client

    @overload
    async def create(
        self,
        *,
        messages: Sequence[Mapping[str, Any]],
        stream: Literal[True],
        user_id: str,
        tier: Tier = None,
        session_id: str | None = None,
        thread_id: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        **body_extras: Any,
    ) -> ChatStream: ...

    @overload
    async def create(
        self,
        *,
        messages: Sequence[Mapping[str, Any]],
        stream: Literal[False] = False,
        user_id: str,
        tier: Tier = None,
        session_id: str | None = None,
        thread_id: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        **body_extras: Any,
    ) -> dict[str, Any]: ...

    async def create(
        self,
        *,
        messages: Sequence[Mapping[str, Any]],
        stream: bool = False,
        user_id: str,
        tier: Tier = None,
        session_id: str | None = None,
        thread_id: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        **body_extras: Any,
    ) -> ChatStream | dict[str, Any]:
        """Send a chat completion for ``user_id``, minting or reusing their token.

        Args:
            messages: OpenAI-style ``[{"role", "content"}, …]``.
            stream: True for a ``ChatStream`` of chunk dicts, False for one response dict.
            user_id: the end user the token is minted for.
            tier: the user's tier (1/2/3 or free/pro/max); None lets the gateway default.
            session_id: ``X-Session-Id``; a new UUIDv4 per call when None.
            thread_id: ``X-Thread-Id`` for a persistent thread, or None.
            timeout: this request's timeouts, instead of the client's. For a stream, the
                read timeout is the longest wait for the next bytes of the answer.
            **body_extras: further body fields, sent verbatim (``model``, ``max_tokens``,
                ``stream_options`` …).

        Returns:
            The open stream (iterate it, then ``aclose()`` or use ``async with``), or the
            completion dict.

        Raises:
            errors.InvalidArgumentError: bad arguments; nothing was sent.
            errors.BehestAPIError: the gateway answered with an error status.
            errors.BehestConnectionError: the gateway could not be reached or timed out.
        """
        client = self._client
        user_id = validate_user_id(user_id)
        numeric_tier = normalize_tier(tier)
        session = _check_header_id("session_id", session_id) or str(uuid.uuid4())
        thread = _check_header_id("thread_id", thread_id)
        body = {"messages": _check_messages(messages), "stream": stream, **body_extras}
        response = await client._chat_request(
            body=body,
            stream=stream,
            user_id=user_id,
            tier=numeric_tier,
            session_id=session,
            thread_id=thread,
            timeout=timeout,
        )
        if stream:
            return ChatStream(response, session_id=session)
        payload = _json_body(response, response.headers.get("x-trace-id"))
        if not isinstance(payload, dict):
            raise errors.BehestAPIError(
                "chat answer is not a JSON object",
                status=response.status_code,
                code="invalid_response",
                trace_id=response.headers.get("x-trace-id"),
            )
        return payload


class Chat:
    """``client.chat``: holds ``completions``."""

    def __init__(self, client: BehestClient) -> None:
        """Bind to ``client``."""
        self.completions = Completions(client)


def _check_base_url(base_url: object) -> str:
    if not isinstance(base_url, str) or not base_url.strip():
        raise errors.BehestConfigError(
            "BEHEST_BASE_URL: missing; expected e.g. https://<slug>.behest.app"
        )
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise errors.BehestConfigError(
            "BEHEST_BASE_URL: must be an http:// or https:// URL with a host"
        )
    if url.userinfo:
        raise errors.BehestConfigError("BEHEST_BASE_URL: must not contain a user name or password")
    if url.query or url.fragment:
        raise errors.BehestConfigError("BEHEST_BASE_URL: must not have a query or fragment")
    return str(url).rstrip("/")


def _require(variable: str, value: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.BehestConfigError(
            f"{variable}: required when BEHEST_KEY is a signing key (behest_pk_…)",
            code="missing_env",
        )
    return value.strip()


def _check_header_id(name: str, value: str | None) -> str | None:
    """Validate an id that travels in a header: printable ASCII, 1 to 255 characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.InvalidArgumentError(f"{name}: must be a string, got {type(value).__name__}")
    if not value or len(value) > _MAX_HEADER_ID_CHARS:
        raise errors.InvalidArgumentError(f"{name}: must be 1 to {_MAX_HEADER_ID_CHARS} characters")
    if not (value.isascii() and value.isprintable()):
        raise errors.InvalidArgumentError(f"{name}: must be printable ASCII")
    return value


def _check_messages(messages: object) -> list[Any]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise errors.InvalidArgumentError("messages: must be a non-empty list of messages")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise errors.InvalidArgumentError(
                f"messages[{index}]: must be an object with a string 'role'"
            )
    return list(messages)


async def _read_body(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.TimeoutException as exc:
        raise _timeout_error(exc) from None
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise errors.BehestConnectionError(
            f"answer cut short ({type(exc).__name__})",
            status=response.status_code,
            trace_id=response.headers.get("x-trace-id"),
        ) from None
    finally:
        await response.aclose()


def _json_body(response: httpx.Response, trace_id: str | None) -> Any:
    try:
        return response.json()
    except ValueError:
        raise errors.BehestAPIError(
            "answer is not JSON",
            status=response.status_code,
            code="invalid_response",
            trace_id=trace_id,
        ) from None


def _timeout_error(exc: httpx.TimeoutException) -> errors.TimeoutError:
    what = {
        httpx.ReadTimeout: "no answer within the read timeout",
        httpx.WriteTimeout: "request not sent within the write timeout",
        httpx.PoolTimeout: "no free connection within the pool timeout",
    }.get(type(exc), "timed out")
    return errors.TimeoutError(what)


def _origin(base_url: str) -> str:
    url = httpx.URL(base_url)
    return f"{url.scheme}://{url.netloc.decode()}"
