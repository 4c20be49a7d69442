"""The chat page: finished messages, one small draft for the reply in progress, and a turn.

A turn runs as a background event: it takes the user from the server-side session, asks the
process's Behest client for a (cached) token and streams the completion. The reply in
progress lives only in `draft`, pushed at most every `APP_STREAM_FLUSH_MS` (default 50 ms;
the first piece at once), so the browser receives a few small deltas instead of one per
token; the finished reply moves into `messages` once. Every way a turn can end (done,
stopped, failed, cut) keeps the user's message and whatever text arrived, marked with the
reason.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import reflex as rx

from behest_chat import routes
from behest_chat.behest import errors
from behest_chat.inflight import turns
from behest_chat.services import get_client
from behest_chat.settings import get_settings
from behest_chat.state.auth import AuthState

__all__ = ["ChatState", "describe_error"]



def describe_error(exc: BaseException) -> tuple[str, str]:
    """A short kind label and a human sentence for a failed turn; never the raw exception."""
    if isinstance(exc, errors.QuotaExceededError):
        return "quota", "The daily quota of your plan is used up. It resets at midnight UTC."
    if isinstance(exc, errors.RateLimitError):
        wait = f" Try again in {exc.retry_after} s." if exc.retry_after else ""
        return "rate_limited", "Too many requests right now." + wait
    if isinstance(exc, errors.AuthenticationError):
        return "auth", "The gateway did not accept the credentials. Check the settings page."
    if isinstance(exc, errors.PermissionDeniedError):
        return "forbidden", "The gateway refused this project or user."
    if isinstance(exc, errors.BadRequestError):
        return "bad_request", "The gateway rejected the request."
    if isinstance(exc, errors.ServerError):
        return "server", "The model service failed. The answer so far is kept; retry."
    if isinstance(exc, errors.BehestConnectionError):
        return "unreachable", "The gateway could not be reached. Retry in a moment."
    if isinstance(exc, errors.StreamError):
        return "cut", "The answer was cut off. The part that arrived is kept; retry."
    return "error", "Something went wrong with this answer. Retry."


def _message(role: str, content: str, status: str = "done", error: str = "") -> dict[str, str]:
    return {
        "id": uuid.uuid4().hex[:12],
        "role": role,
        "content": content,
        "status": status,
        "error": error,
    }


class ChatState(AuthState):
    """One conversation per tab: its messages, the draft, and the turn's progress."""

    messages: list[dict[str, str]] = []
    draft: str = ""
    # "" | "connecting" | "waiting" | "streaming"
    phase: str = ""
    _session_id: str = ""

    @rx.var
    def busy(self) -> bool:
        """True while a turn is in progress (Stop replaces Send)."""
        return self.phase != ""

    @rx.event
    def new_conversation(self):
        """Start over with an empty conversation and a fresh Behest session id."""
        if self.busy:
            return
        self.messages = []
        self.draft = ""
        self._session_id = ""

    @rx.event
    async def stop(self):
        """Stop the running turn; the upstream request is closed at once."""
        await turns.cancel(self.router.session.client_token)

    @rx.event(background=True)
    async def send(self, form_data: dict[str, Any]):
        """Send the composer's text and stream the reply."""
        text = str(form_data.get("prompt", "")).strip()
        if not text:
            return
        async with self:
            if self.busy:
                return
            self.messages.append(_message("user", text))
        async for update in self._run_turn():
            yield update

    @rx.event(background=True)
    async def retry(self):
        """Ask again for the last question, keeping the failed reply above it."""
        async with self:
            if self.busy or not any(m["role"] == "user" for m in self.messages):
                return
        async for update in self._run_turn():
            yield update

    async def _run_turn(self):
        async with self:
            user = self._current_user()
            if user is not None and not self._session_id:
                self._session_id = str(uuid.uuid4())
            self.phase = "connecting"
            self.draft = ""
            history = [
                {"role": m["role"], "content": m["content"]}
                for m in self.messages
                if m["status"] in ("done", "stopped") and m["content"]
            ]
            session_id = self._session_id
            client_token = self.router.session.client_token
            if user is None:
                self.phase = ""
        if user is None:
            yield rx.redirect(routes.LOGIN)
            return
        task = asyncio.current_task()
        assert task is not None
        turns.register(client_token, task)
        text, status, error = "", "done", ""
        try:
            stream = await get_client().chat.completions.create(
                messages=history,
                stream=True,
                user_id=user.behest_user_id,
                tier=user.tier,
                session_id=session_id,
            )
            async with self:
                self.phase = "waiting"
            flush_seconds = get_settings().stream_flush_ms / 1000
            last_push = 0.0
            async with stream:
                async for chunk in stream:
                    choices = chunk.get("choices") or []
                    piece = (choices[0].get("delta") or {}).get("content") if choices else None
                    if not piece:
                        continue
                    text += piece
                    now = time.monotonic()
                    if now - last_push >= flush_seconds:
                        last_push = now
                        async with self:
                            self.phase = "streaming"
                            self.draft = text
        except asyncio.CancelledError:
            status, error = "stopped", "Stopped."
        except errors.BehestError as exc:
            status = "error"
            error = describe_error(exc)[1]
        finally:
            turns.unregister(client_token, task)
            async with self:
                self.messages.append(_message("assistant", text, status, error))
                self.draft = ""
                self.phase = ""
