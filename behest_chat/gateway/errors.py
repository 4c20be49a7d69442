"""The data-plane error envelope (contract §6.2) and the exception that carries it.

Every error the gateway answers has the nested shape
``{"error": {"code": ..., "message": ..., "details": {...}?}}``; the flat behest-auth
shape is not used, because both published SDKs read only the nested one (contract §8.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["GatewayError", "default_code", "envelope", "error_response"]

_DEFAULT_CODES = {
    400: "validation_error",
    401: "invalid_token",
    402: "quota_exceeded",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
}


def default_code(status: int) -> str:
    """The machine code the contract pairs with an HTTP status.

    Args:
        status: HTTP status code.

    Returns:
        The ``error.code`` for that status (``server_error`` for any 5xx).
    """
    if status >= 500:
        return "server_error"
    return _DEFAULT_CODES.get(status, "error")


def envelope(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the nested error body.

    Args:
        code: machine-readable code.
        message: one human sentence; must never contain a key or token.
        details: optional structured extras (e.g. tier limits on 402).

    Returns:
        The JSON-ready body.
    """
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = dict(details)
    return {"error": error}


class GatewayError(Exception):
    """An error answered to the client with the nested envelope.

    Attributes:
        status: HTTP status.
        code: ``error.code``.
        message: ``error.message``.
        details: ``error.details`` or None.
        headers: extra response headers (e.g. ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or default_code(status)
        self.message = message
        self.details = dict(details) if details else None
        self.headers = dict(headers) if headers else {}

    def to_response(self) -> JSONResponse:
        """Render as a JSON response with the envelope and extra headers."""
        return error_response(
            self.status, self.message, code=self.code, details=self.details, headers=self.headers
        )


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON response carrying the nested envelope.

    Args:
        status: HTTP status.
        message: one human sentence.
        code: ``error.code``; defaults to the contract's code for ``status``.
        details: optional ``error.details``.
        headers: extra response headers.

    Returns:
        The response (``X-Trace-Id`` is added by the request middleware).
    """
    body = envelope(code or default_code(status), message, details)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))
