"""Browser-direct turns: what the page hands back after streaming from Behest itself.

In browser-direct mode ``assets/direct.js`` (``behestDirect.runTurn``) streams the answer in
the page and resolves with a plain object, which Reflex delivers to a state handler. That
object comes from the browser, so it is read defensively here: unknown statuses become
errors, text is capped, and the error is rebuilt as the same :mod:`behest_chat.behest.errors`
class the relay would have raised, so ``describe_error`` gives both paths the same kind and
sentence. The browser's own message is never shown as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from behest_chat.behest import errors

__all__ = [
    "DRAFT_SELECTOR",
    "MAX_TEXT_CHARS",
    "RUNNING_SCRIPT",
    "STOP_SCRIPT",
    "DirectTurn",
    "read_direct_turn",
    "run_turn_script",
]

# Where runTurn writes the reply while it streams (an element the page renders empty).
DRAFT_SELECTOR = '[data-testid="direct-draft"]'
# Stop: aborts the page's fetch, so the gateway sees the disconnect at once.
STOP_SCRIPT = "window.behestDirect.stop()"
# Whether this page is streaming a turn. A page whose scripts are not loaded yet has just
# been (re)loaded, so no turn of it can be running.
RUNNING_SCRIPT = (
    "window.behestDirect && window.behestDirect.running ? window.behestDirect.running() : false"
)

MAX_TEXT_CHARS = 200_000
_MAX_FIELD_CHARS = 200

# Kinds sent by direct.js → the error the relay raises in the same situation.
_ERRORS: dict[str, type[errors.BehestError]] = {
    "quota": errors.QuotaExceededError,
    "rate_limited": errors.RateLimitError,
    "auth": errors.AuthenticationError,
    "forbidden": errors.PermissionDeniedError,
    "bad_request": errors.BadRequestError,
    "server": errors.ServerError,
    "unreachable": errors.ConnectError,
    "cut": errors.StreamCutError,
    "token": errors.ServerError,
    "signed_out": errors.AuthenticationError,
}
_STREAM_CODES: dict[str, type[errors.StreamError]] = {
    "stream_cut": errors.StreamCutError,
    "stream_parse_error": errors.MalformedFrameError,
}


@dataclass(frozen=True)
class DirectTurn:
    """One browser-direct turn, checked.

    Attributes:
        text: the answer as far as it arrived (possibly partial).
        status: ``"done"``, ``"stopped"`` or ``"error"``, as the relay marks a turn.
        error: the relay's error for the same failure, or ``None``.
        signed_out: the token endpoint said the user is signed out (send them to login).
        usage: ``{"prompt_tokens", "completion_tokens", "total_tokens"}`` as the gateway
            streamed it, or ``None``. Reported by the browser: use it for display, and the
            gateway's usage API (by session id) where the count must be trusted.
        session_id: the ``X-Session-Id`` the browser sent.
        trace_id: the gateway's ``X-Trace-Id``, for support.
    """

    text: str
    status: Literal["done", "stopped", "error"]
    error: errors.BehestError | None
    signed_out: bool
    usage: dict[str, int] | None
    session_id: str
    trace_id: str


_NOT_LOADED = {"text": "", "status": "error", "kind": "error", "detail": "direct.js not loaded"}


def run_turn_script(
    *,
    base_url: str,
    messages: Sequence[Mapping[str, str]],
    session_id: str,
    thread_id: str | None = None,
    target: str = DRAFT_SELECTOR,
    answer_id: int | None = None,
    offset: int = 0,
) -> str:
    """The JavaScript that runs one browser-direct turn, for ``rx.call_script``.

    Use it as ``rx.call_script(run_turn_script(...), callback=State.handler)``; the handler
    receives the turn's result object, to be read with :func:`read_direct_turn`.

    Args:
        base_url: the gateway URL for browsers (``settings.behest_public_base_url``).
        messages: the conversation so far, ``[{"role", "content"}, ...]``.
        session_id: the conversation's ``X-Session-Id``.
        thread_id: the ``X-Thread-Id``, if the conversation has a Behest thread.
        target: CSS selector of the element the streaming reply is written into ("" for
            none).
        answer_id: hand the pieces to the page's reply in progress for this answer
            (:mod:`behest_chat.live_draft`) instead, after ``offset`` characters kept from
            before (Continue).

    Returns:
        A ``window.behestDirect.runTurn({...})`` call (an error result if the script is not
        loaded yet); every value is JSON-encoded.
    """
    options = {
        "baseUrl": base_url,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "sessionId": session_id,
        "threadId": thread_id,
        "target": target,
    }
    if answer_id is not None:
        options |= {"answerId": int(answer_id), "offset": int(offset)}
    # Page scripts load after hydration: a turn started before that is an error turn, not
    # an exception that would leave the page waiting for a callback that never comes.
    return (
        f"window.behestDirect ? window.behestDirect.runTurn({json.dumps(options)})"
        f" : Promise.resolve({json.dumps(_NOT_LOADED)})"
    )


def read_direct_turn(payload: Any) -> DirectTurn:
    """Check what ``behestDirect.runTurn`` / ``streamChat`` resolved with.

    Args:
        payload: the object the page sent (any JSON value; anything unusable becomes an
            error turn with no text).

    Returns:
        The turn, ready to be stored like a relayed one.
    """
    data: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    text = data.get("text")
    text = text[:MAX_TEXT_CHARS] if isinstance(text, str) else ""
    status = data.get("status")
    kind = _field(data, "kind")
    error: errors.BehestError | None = None
    if status not in ("done", "stopped"):
        status = "error"
        error = _rebuild_error(data, kind)
    return DirectTurn(
        text=text,
        status=status,
        error=error,
        signed_out=status == "error" and kind == "signed_out",
        usage=_usage(data.get("usage")) if status == "done" or text else None,
        session_id=_field(data, "sessionId"),
        trace_id=_field(data, "traceId"),
    )


def _rebuild_error(data: Mapping[str, Any], kind: str) -> errors.BehestError:
    code = _field(data, "code") or None
    http_status = data.get("httpStatus")
    status = http_status if isinstance(http_status, int) and 100 <= http_status <= 599 else None
    retry_after = data.get("retryAfter")
    if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
        retry_after = None
    cls: type[errors.BehestError] = _ERRORS.get(kind, errors.BehestError)
    if kind == "cut":
        cls = _STREAM_CODES.get(code or "", errors.StreamErrorEvent)
    return cls(
        f"browser-direct turn failed ({kind or 'unknown'})",
        status=status,
        code=code,
        trace_id=_field(data, "traceId") or None,
        retry_after=retry_after,
    )


def _usage(value: Any) -> dict[str, int] | None:
    if not isinstance(value, Mapping):
        return None
    usage = {
        name: value[name]
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(value.get(name), int) and not isinstance(value.get(name), bool)
        and value[name] >= 0
    }
    return usage or None


def _field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    return value[:_MAX_FIELD_CHARS] if isinstance(value, str) else ""
