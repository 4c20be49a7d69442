"""Relay to an OpenAI-compatible upstream (Ollama, llama.cpp, vLLM, OpenAI).

The client's body is forwarded as is, except ``model``, which becomes the configured
upstream model. Streams are read event by event and handed on one chunk at a time; the
caller re-frames them with LF LF, whatever framing the upstream used. Closing the
iterator (for example because the client went away) closes the upstream response, which
cancels the upstream request.

Upstream failures map to the gateway's envelope: 400/422 → 400 ``validation_error``
(with the upstream's message), 429 → 429 with its ``Retry-After``, anything else → 502
``server_error``. The upstream key is sent only to the upstream and never logged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from behest_chat.gateway.config import UpstreamConfig
from behest_chat.gateway.errors import GatewayError

__all__ = ["Upstream", "UpstreamStreamError"]

_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=10.0)


class UpstreamStreamError(Exception):
    """The upstream failed after the stream started (sent an error event or broke)."""

    def __init__(self, message: str, code: str = "server_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Upstream:
    """One pooled HTTP client talking to the configured upstream."""

    def __init__(self, config: UpstreamConfig) -> None:
        """Create the client (no connection is made yet).

        Args:
            config: upstream URL, model and key.
        """
        self.config = config
        headers = {"Accept": "application/json"}
        if config.key:
            headers["Authorization"] = f"Bearer {config.key}"
        self._client = httpx.AsyncClient(timeout=_TIMEOUT, headers=headers)
        self._url = config.url + "/chat/completions"

    @property
    def model_id(self) -> str:
        """The model the gateway lists and reports."""
        return self.config.model

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Forward a non-streaming completion.

        Args:
            body: the client's request body.

        Returns:
            The upstream's ``chat.completion`` object.

        Raises:
            GatewayError: the upstream failed or answered something unusable.
        """
        try:
            response = await self._client.post(self._url, json=self._body(body, stream=False))
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        if response.status_code >= 400:
            raise _status_error(response.status_code, response.headers, response.content)
        try:
            data = response.json()
        except ValueError:
            raise GatewayError(502, "upstream answered with something that is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise GatewayError(502, "upstream answer has no choices")
        return data

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Forward a streaming completion and yield each chunk object.

        Errors before the first chunk raise GatewayError (so the client gets a normal
        status); errors afterwards raise UpstreamStreamError.

        Args:
            body: the client's request body.

        Yields:
            Parsed ``chat.completion.chunk`` objects, in order; ends at ``[DONE]``.
        """
        request = self._client.build_request("POST", self._url, json=self._body(body, stream=True))
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        try:
            if response.status_code >= 400:
                raise _status_error(response.status_code, response.headers, await response.aread())
            data_lines: list[str] = []
            try:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data_lines.append(line[5:].removeprefix(" "))
                        continue
                    if line or not data_lines:
                        continue  # comments, event:/id: lines, stray blank lines
                    data, data_lines = "\n".join(data_lines), []
                    if data.strip() == "[DONE]":
                        return
                    yield _parse_chunk(data)
            except httpx.HTTPError as exc:
                raise UpstreamStreamError(f"upstream stream broke ({type(exc).__name__})") from None
            if data_lines and "\n".join(data_lines).strip() != "[DONE]":
                yield _parse_chunk("\n".join(data_lines))
        finally:
            await response.aclose()

    def _body(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        return {**body, "model": self.config.model, "stream": stream}


def _parse_chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise UpstreamStreamError("upstream sent a frame that is not JSON") from None
    if not isinstance(chunk, dict):
        raise UpstreamStreamError("upstream sent a frame that is not an object")
    error = chunk.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamStreamError(f"upstream error: {message or 'unknown'}"[:300])
    return chunk


def _unreachable(exc: httpx.HTTPError) -> GatewayError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
    return GatewayError(502, f"upstream model server {kind} ({type(exc).__name__})")


def _status_error(status: int, headers: httpx.Headers, content: bytes) -> GatewayError:
    message = _upstream_message(content)
    if status in (400, 422):
        return GatewayError(400, f"upstream rejected the request: {message}")
    if status == 429:
        retry_after = headers.get("retry-after", "")
        return GatewayError(
            429,
            "upstream is rate limiting; retry later",
            headers={"Retry-After": retry_after if retry_after.isdigit() else "1"},
        )
    if status in (401, 403):
        return GatewayError(
            502, "upstream refused the gateway's credentials (BEHEST_GATEWAY_UPSTREAM_KEY)"
        )
    return GatewayError(502, f"upstream failed with HTTP {status}: {message}")


def _upstream_message(content: bytes) -> str:
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content[:200].decode("utf-8", "replace") or "no message"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:200]
    if isinstance(error, str):
        return error[:200]
    return "no message"
