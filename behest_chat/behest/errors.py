"""Every failure the Behest client can raise, as one tree.

```
BehestError                         status, code, message, details, trace_id, retry_after, kind
├── BehestConfigError   (ValueError) bad key / base URL / missing kid, tenant or project
├── InvalidArgumentError (ValueError) bad user_id, tier, ttl or messages; raised before any I/O
├── BehestAPIError                   the gateway answered with an error status (or nonsense)
│   ├── BadRequestError              400 / 422  validation_error
│   ├── AuthenticationError          401        invalid_token
│   ├── QuotaExceededError           402        quota_exceeded   (.tier .limit .usage)
│   ├── PermissionDeniedError        403        forbidden
│   ├── NotFoundError                404        not_found
│   ├── RateLimitError               429        rate_limited     (.retry_after seconds)
│   └── ServerError                  5xx        server_error
├── BehestConnectionError            no usable answer from the gateway at all
│   ├── ConnectError                 could not connect (refused, DNS, TLS, connect timeout)
│   └── TimeoutError                 connected, then no data within the read timeout
└── StreamError                      a 200 stream that went wrong part-way
    ├── StreamCutError               ended (or the connection broke) before ``data: [DONE]``
    ├── MalformedFrameError          a frame that is not a JSON object (or not UTF-8)
    └── StreamErrorEvent             the gateway sent an in-band ``error`` event
```

Every error carries ``kind``, a short stable label for the UI (``"rate_limited"``,
``"stream_cut"`` …), so callers can pick a human message without parsing ``str(exc)``.
Other statuses (409, 418 …) become a plain ``BehestAPIError``.

``error_from_response`` is the single place that turns an HTTP error answer into one of these.
It reads the nested data-plane envelope ``{"error": {"code", "message", "details"}}`` and
the flat mint envelope ``{"error": "<text>", "code": …}`` (contract §6.2, §2.4), the
``X-Trace-Id`` header (``X-Request-Id`` as a fallback) and ``Retry-After``.
No error message ever contains a key or a token: messages come from the gateway's envelope
or from fixed text here.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BehestAPIError",
    "BehestConfigError",
    "BehestConnectionError",
    "BehestError",
    "ConnectError",
    "InvalidArgumentError",
    "MalformedFrameError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "StreamCutError",
    "StreamError",
    "StreamErrorEvent",
    "TimeoutError",
    "error_from_response",
    "parse_retry_after",
]

_MAX_MESSAGE_CHARS = 300


class BehestError(Exception):
    """Root of every error raised by the Behest client.

    Attributes:
        status: HTTP status of the answer, or None when there was none.
        code: machine code (the envelope's ``error.code`` or this class's default).
        message: one human-readable line.
        details: the envelope's ``error.details`` (empty dict when absent).
        trace_id: the gateway's ``X-Trace-Id`` header, for support correlation.
        retry_after: seconds to wait before retrying, when the gateway said so.
        kind: short stable label for the UI.
    """

    kind: ClassVar[str] = "error"
    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.details: dict[str, Any] = dict(details or {})
        self.trace_id = trace_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        return f"{prefix}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, trace_id={self.trace_id!r})"
        )


class BehestConfigError(BehestError, ValueError):
    """The client's configuration is unusable (raised by the constructor)."""

    kind = "config"
    default_code = "bad_config"

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(BehestError, ValueError):
    """A call argument (user_id, tier, ttl, messages …) is invalid; nothing was sent."""

    kind = "invalid_argument"
    default_code = "validation_error"

    def __str__(self) -> str:
        return self.message


class BehestAPIError(BehestError):
    """The gateway answered with an error status, or with a body the client cannot use."""

    kind = "api_error"
    default_code = "api_error"


class BadRequestError(BehestAPIError):
    """400 or 422: the gateway rejected the request body or headers; don't retry."""

    kind = "bad_request"
    default_code = "validation_error"


class AuthenticationError(BehestAPIError):
    """401: token (or API key, on mint) missing, expired, malformed or unknown."""

    kind = "invalid_token"
    default_code = "invalid_token"


class QuotaExceededError(BehestAPIError):
    """402: the user is over a daily cap of their tier; show an upgrade, don't retry."""

    kind = "quota_exceeded"
    default_code = "quota_exceeded"

    @property
    def tier(self) -> str | int | None:
        """The user's tier as the gateway reported it (e.g. ``"free"``)."""
        return self.details.get("tier")

    @property
    def limit(self) -> dict[str, Any]:
        """The cap that was hit, e.g. ``{"tokens_per_day": 50000}``."""
        value = self.details.get("limit")
        return value if isinstance(value, dict) else {}

    @property
    def usage(self) -> dict[str, Any]:
        """The usage that broke the cap, e.g. ``{"tokens_today": 50123}``."""
        value = self.details.get("usage")
        return value if isinstance(value, dict) else {}


class PermissionDeniedError(BehestAPIError):
    """403: the token is valid but not allowed here (wrong tenant, killed project)."""

    kind = "forbidden"
    default_code = "forbidden"


class NotFoundError(BehestAPIError):
    """404: unknown path, project or thread."""

    kind = "not_found"
    default_code = "not_found"


class RateLimitError(BehestAPIError):
    """429: too many requests per minute; ``retry_after`` says how long to wait."""

    kind = "rate_limited"
    default_code = "rate_limited"


class ServerError(BehestAPIError):
    """5xx: the gateway or the model provider failed."""

    kind = "server_error"
    default_code = "server_error"


class BehestConnectionError(BehestError):
    """The gateway could not be reached or stopped answering."""

    kind = "connection"
    default_code = "network_error"


class ConnectError(BehestConnectionError):
    """Could not open a connection (refused, DNS, TLS, connect timeout)."""

    kind = "connect_failed"
    default_code = "connect_failed"


class TimeoutError(BehestConnectionError):
    """Connected, but the gateway sent nothing within the read timeout."""

    kind = "timeout"
    default_code = "timeout"


class StreamError(BehestError):
    """A streamed answer that started fine and then went wrong."""

    kind = "stream_error"
    default_code = "stream_error"


class StreamCutError(StreamError):
    """The stream ended, or its connection broke, before ``data: [DONE]``."""

    kind = "stream_cut"
    default_code = "stream_cut"


class MalformedFrameError(StreamError):
    """A stream frame whose data is not a JSON object (or not valid UTF-8)."""

    kind = "malformed_frame"
    default_code = "stream_parse_error"


class StreamErrorEvent(StreamError):  # noqa: N818 - named for what the gateway sent
    """The gateway reported an error inside the stream (``event: error`` or ``{"error": …}``)."""

    kind = "stream_error_event"
    default_code = "stream_error"


_BY_STATUS: dict[int, type[BehestAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: QuotaExceededError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes | str | None
) -> BehestAPIError:
    """Turn an HTTP error answer into the matching ``BehestAPIError`` subclass.

    Args:
        status: the HTTP status code (normally ≥ 400).
        headers: response headers; looked up case-insensitively for ``X-Trace-Id``
            (or ``X-Request-Id``) and ``Retry-After``.
        body: the raw response body.

    Returns:
        The error to raise; its message is one line, taken from the envelope when present.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    code, message, details = _read_envelope(body)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else BehestAPIError)
    retry_after = parse_retry_after(lowered.get("retry-after"))
    if retry_after is None and isinstance(details.get("retry_after"), int):
        retry_after = details["retry_after"]
    return cls(
        message or f"HTTP {status}",
        status=status,
        code=code,
        details=details,
        trace_id=lowered.get("x-trace-id") or lowered.get("x-request-id"),
        retry_after=retry_after,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> int | None:
    """Read a ``Retry-After`` header: delta seconds or an HTTP date; None when unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0, round(when.timestamp() - current))


def _read_envelope(body: bytes | str | None) -> tuple[str | None, str | None, dict[str, Any]]:
    """Extract (code, message, details) from either envelope shape; tolerate anything."""
    if not body:
        return None, None, {}
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None, {}
    if not isinstance(payload, dict):
        return None, None, {}
    error = payload.get("error")
    if isinstance(error, dict):  # nested data-plane envelope
        code, message, details = error.get("code"), error.get("message"), error.get("details")
    else:  # flat behest-auth envelope: {"error": "<text>", "code": …, "retryable": …}
        code, message, details = payload.get("code"), error, None
        if details is None:
            details = {k: v for k, v in payload.items() if k not in ("error", "code", "message")}
        message = message if isinstance(message, str) else payload.get("message")
    return (
        code if isinstance(code, str) and code else None,
        _one_line(message) if isinstance(message, str) and message.strip() else None,
        dict(details) if isinstance(details, dict) else {},
    )


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_MESSAGE_CHARS else flat[: _MAX_MESSAGE_CHARS - 1] + "…"
