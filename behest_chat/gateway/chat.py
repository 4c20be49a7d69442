"""``POST /v1/chat/completions``: validation, limits, faults, and both model backends.

Order of checks: body size (413) and JSON (400) → fault switch → token (401/403) → request
fields (400) → tier limits (402/429) → generation. A request counts against the limits once
it passes validation; its tokens are added when it ends, also when the client leaves early
(usage stops where the stream stopped).

Request fields used: ``messages`` (required, non-empty), ``model`` (absent, ``""``,
``"default"`` or the served model; anything else is 400), ``stream``,
``stream_options.include_usage``, ``max_tokens``/``max_completion_tokens`` (offline model:
truncates with ``finish_reason: "length"``). Everything else is relayed to an upstream
unchanged and ignored by the offline model.

Headers: ``X-Session-Id`` (usage per session; falls back to the token's ``sid``) and
``X-Thread-Id`` (creates the thread on first use; the last user message and the finished
assistant reply are stored). A client-sent ``X-End-User-Id`` is ignored: the uid comes from
the token only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from behest_chat.gateway.auth import Principal
from behest_chat.gateway.errors import GatewayError
from behest_chat.gateway.faults import CHAT_PATH, FaultPlan, StreamCutError
from behest_chat.gateway.offline import last_user_text, prompt_tokens, tokenize
from behest_chat.gateway.runtime import Gateway, read_json, wait_for_disconnect
from behest_chat.gateway.store import UsageRecord
from behest_chat.gateway.streaming import (
    DONE_FRAME,
    ChunkWriter,
    EventStreamResponse,
    error_frame,
    frame,
    usage_object,
)
from behest_chat.gateway.upstream import UpstreamStreamError

__all__ = ["chat_completions"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_HEADER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,255}$")
_MALFORMED_FRAME = b'data: {"id": "chatcmpl-broken", "choices": [\n\n'
# Yield to the event loop this often when tokens are not paced, so disconnects and other
# requests are still served during a long unpaced answer.
_YIELD_EVERY = 64


@dataclass
class _Tally:
    """What a completion produced so far; read when it ends, however it ends."""

    messages: list[dict[str, Any]]  # the request's, for its prompt tokens
    keep_text: bool = False  # only threads need the reply text; long answers can be huge
    completion_tokens: int = 0
    parts: list[str] = field(default_factory=list)
    upstream_usage: dict[str, Any] | None = None

    @functools.cached_property
    def prompt_tokens(self) -> int:
        # Counted when the usage is due, not before the first token: a long history takes
        # a while to count.
        return prompt_tokens(self.messages)

    def add(self, text: str, tokens: int) -> None:
        if self.keep_text:
            self.parts.append(text)
        self.completion_tokens += tokens


@dataclass(frozen=True)
class _Chat:
    """A validated chat request."""

    principal: Principal
    body: dict[str, Any]
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    session_id: str | None
    thread_id: str | None
    completion_id: str
    created: int


async def chat_completions(request: Request) -> Response:
    """Handle ``POST /v1/chat/completions``."""
    gateway: Gateway = request.app.state.gateway
    gateway.store.stats.chat_requests += 1
    body = await read_json(request, gateway.config.max_body_bytes)
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise GatewayError(400, "stream: must be true or false")
    plan = (
        gateway.faults.take(CHAT_PATH, streaming=stream) if gateway.config.faults_enabled else None
    )
    if plan is not None and plan.status is not None:
        return await _fail_as_planned(request, plan)
    principal = gateway.authenticate(request)
    chat = _validate(request, body, principal, stream, gateway.model_id)
    await gateway.admit(principal)
    if chat.thread_id:
        text = last_user_text(chat.messages)
        gateway.store.append_message(
            principal.project_id, principal.uid, chat.thread_id, "user", text, time.time()
        )
    if stream:
        return EventStreamResponse(_guarded(gateway, chat, plan, request.state))
    return await _complete(request, gateway, chat, plan)


async def _fail_as_planned(request: Request, plan: FaultPlan) -> Response:
    if plan.stall_ms and await wait_for_disconnect(request.receive, plan.stall_ms / 1000):
        request.app.state.gateway.store.stats.client_disconnects += 1
        return Response(status_code=499)
    raise plan.to_error()


def _validate(
    request: Request, body: dict[str, Any], principal: Principal, stream: bool, model_id: str
) -> _Chat:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "messages: must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise GatewayError(400, f"messages[{index}]: must be an object")
        if message.get("role") not in _ROLES:
            raise GatewayError(
                400, f"messages[{index}].role: must be one of {', '.join(sorted(_ROLES))}"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise GatewayError(
                400, f"messages[{index}].content: must be a string or a list of parts"
            )
    model = body.get("model")
    if model not in (None, "", "default", model_id):
        shown = str(model)[:80]
        raise GatewayError(
            400,
            f'model: unknown model {shown!r}; this project serves {model_id!r} (or send "default")',
        )
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise GatewayError(400, "stream_options: must be an object")
    include_usage = bool(options and options.get("include_usage") is True)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise GatewayError(400, "max_tokens: must be a positive integer")
    session_id = _header_id(request, "x-session-id") or principal.sid
    return _Chat(
        principal=principal,
        body=body,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        session_id=session_id,
        thread_id=_header_id(request, "x-thread-id"),
        completion_id="chatcmpl-" + uuid.uuid4().hex[:24],
        created=int(time.time()),
    )


def _header_id(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None or value == "":
        return None
    if not _HEADER_ID.match(value):
        raise GatewayError(400, f"{name}: must be 1-255 letters, digits or . _ : @ -")
    return value


async def _complete(
    request: Request, gateway: Gateway, chat: _Chat, plan: FaultPlan | None
) -> Response:
    """A non-streaming completion; a client that leaves cancels the work (and the upstream call)."""
    tally = _Tally(chat.messages, keep_text=chat.thread_id is not None)
    result: dict[str, Any] | None = None
    failure: GatewayError | None = None
    disconnected = False

    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal disconnected
            disconnected = await wait_for_disconnect(request.receive, float("inf"))
            group.cancel_scope.cancel()

        async def work() -> None:
            # Errors are carried out of the task group by hand: it would wrap them in a group.
            nonlocal result, failure
            try:
                if plan is not None and plan.stall_ms:
                    await anyio.sleep(plan.stall_ms / 1000)
                result = await _produce_completion(gateway, chat, tally)
            except GatewayError as exc:
                failure = exc
            finally:
                group.cancel_scope.cancel()

        group.start_soon(watch)
        group.start_soon(work)

    if failure is not None:
        raise failure
    if disconnected or result is None:
        gateway.store.stats.client_disconnects += 1
        await _settle(gateway, chat, tally, completed=False)
        return Response(status_code=499)
    await _settle(gateway, chat, tally, completed=True)
    return JSONResponse(result)


async def _produce_completion(gateway: Gateway, chat: _Chat, tally: _Tally) -> dict[str, Any]:
    if gateway.upstream is not None:
        gateway.store.stats.upstream_requests += 1
        data = await gateway.upstream.complete(chat.body)
        for choice in data.get("choices", []):
            content = (
                (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
            )
            if isinstance(content, str):
                tally.add(content, len(tokenize(content)))
        if isinstance(data.get("usage"), dict):
            tally.upstream_usage = data["usage"]
        return data
    tokens = list(gateway.offline.answer(chat.messages))
    finish = "stop"
    if chat.max_tokens is not None and len(tokens) > chat.max_tokens:
        tokens, finish = tokens[: chat.max_tokens], "length"
    text = "".join(tokens)
    tally.add(text, len(tokens))
    return {
        "id": chat.completion_id,
        "object": "chat.completion",
        "created": chat.created,
        "model": gateway.model_id,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": usage_object(tally.prompt_tokens, tally.completion_tokens),
    }


async def _guarded(
    gateway: Gateway, chat: _Chat, plan: FaultPlan | None, state: State
) -> AsyncGenerator[bytes, None]:
    """The event stream with faults applied and accounting done however it ends.

    The way it ended is left in ``state.stream_outcome`` for the request log.
    """
    stats = gateway.store.stats
    tally = _Tally(chat.messages, keep_text=chat.thread_id is not None)
    delay_ms = gateway.config.token_delay_ms
    if plan is not None and plan.token_delay_ms is not None:
        delay_ms = plan.token_delay_ms
    if gateway.upstream is not None:
        events = _upstream_events(gateway, chat, tally, plan.token_delay_ms if plan else None)
    else:
        events = _offline_events(gateway, chat, tally, delay_ms)
    stats.streams_open += 1
    outcome = "disconnected"  # anything that skips the assignments below is the client leaving
    sent = 0
    try:
        if plan is not None and plan.stall_ms:
            await anyio.sleep(plan.stall_ms / 1000)
        async with contextlib.aclosing(events):
            async for event in events:
                if plan is not None:
                    if plan.cut_after is not None and sent >= plan.cut_after:
                        outcome = "cut"
                        raise StreamCutError(f"stream cut after {sent} frames as planned")
                    if plan.error_event_after is not None and sent >= plan.error_event_after:
                        outcome = "error_event"
                        yield error_frame(
                            plan.code or "server_error",
                            plan.message or "injected fault: stream error",
                        )
                        return
                    if plan.malformed_after is not None and sent == plan.malformed_after:
                        yield _MALFORMED_FRAME
                yield event
                sent += 1
        outcome = "completed"
    except UpstreamStreamError as exc:
        outcome = "upstream_error"
        yield error_frame(exc.code, exc.message)
    except GatewayError:
        outcome = "refused"
        raise
    except StreamCutError:
        raise
    except Exception:
        outcome = "failed"
        raise
    finally:
        state.stream_outcome = outcome
        stats.streams_open -= 1
        if outcome == "completed":
            stats.streams_completed += 1
        elif outcome == "cut":
            stats.streams_cut += 1
        elif outcome == "disconnected":
            stats.client_disconnects += 1
        if outcome != "refused":
            # Shielded: after a disconnect the scope is cancelled, but usage must still count.
            with anyio.CancelScope(shield=True):
                await _settle(gateway, chat, tally, completed=outcome == "completed")


async def _offline_events(
    gateway: Gateway, chat: _Chat, tally: _Tally, delay_ms: float
) -> AsyncGenerator[bytes, None]:
    writer = ChunkWriter(chat.completion_id, chat.created, gateway.model_id)
    yield writer.role()
    delay = delay_ms / 1000
    loop = asyncio.get_running_loop()
    start = loop.time()
    finish = "stop"
    for count, token in enumerate(gateway.offline.answer(chat.messages), start=1):
        if chat.max_tokens is not None and count > chat.max_tokens:
            finish = "length"
            break
        if delay > 0:
            # Pace against a schedule, not per token, so sleeps do not add up drift.
            wait = start + count * delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        elif count % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        tally.add(token, 1)
        yield writer.content(token)
    yield writer.finish(finish)
    if chat.include_usage:
        yield writer.usage(tally.prompt_tokens, tally.completion_tokens)
    yield DONE_FRAME


async def _upstream_events(
    gateway: Gateway, chat: _Chat, tally: _Tally, delay_ms: float | None
) -> AsyncGenerator[bytes, None]:
    assert gateway.upstream is not None
    gateway.store.stats.upstream_requests += 1
    saw_usage = False
    chunks = gateway.upstream.stream(chat.body)
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            choices = chunk.setdefault("choices", [])
            if not isinstance(choices, list):
                chunk["choices"] = choices = []
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    tally.add(content, len(tokenize(content)))
            if isinstance(chunk.get("usage"), dict):
                tally.upstream_usage = chunk["usage"]
                saw_usage = True
                if not chat.include_usage:
                    continue
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            yield frame(chunk)
    if chat.include_usage and not saw_usage:
        writer = ChunkWriter(chat.completion_id, chat.created, gateway.model_id)
        yield writer.usage(tally.prompt_tokens, tally.completion_tokens)
    yield DONE_FRAME


async def _settle(gateway: Gateway, chat: _Chat, tally: _Tally, *, completed: bool) -> None:
    """Record usage (always) and the assistant reply (only when complete)."""
    now = time.time()
    prompt, completion = tally.prompt_tokens, tally.completion_tokens
    if tally.upstream_usage is not None:
        prompt = _int_or(tally.upstream_usage.get("prompt_tokens"), prompt)
        completion = _int_or(tally.upstream_usage.get("completion_tokens"), completion)
    principal = chat.principal
    gateway.store.record_usage(
        UsageRecord(
            project_id=principal.project_id,
            uid=principal.uid,
            session_id=chat.session_id,
            model=gateway.model_id,
            timestamp=now,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )
    )
    await gateway.limits.add_tokens(principal.project_id, principal.uid, prompt + completion, now)
    if completed and chat.thread_id:
        gateway.store.append_message(
            principal.project_id,
            principal.uid,
            chat.thread_id,
            "assistant",
            "".join(tally.parts),
            now,
        )


def _int_or(value: Any, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )
