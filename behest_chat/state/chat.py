"""The chat page: a window of the conversation, and the reply in progress as pieces.

Conversations live in the database (:mod:`behest_chat.conversations`); this state holds only
what the tab shows: the last page of the visible branch (``messages``, then the rows added
since in ``tail``; older pages on demand), the sidebar list, and which answer is in
progress (``live_answer_id``). Its text goes to the page as pieces
(:mod:`behest_chat.live_draft`) at most every
``APP_STREAM_FLUSH_MS``. The conversation id comes from the URL (``/chat/<id>``) and every
handler checks, against the server-side session, that the user owns what it touches.

One turn lifecycle. A turn runs as a background task registered in
:data:`behest_chat.inflight.turns` under its conversation id. Its checks (session, live
answer, budgets) pass before anything is sent; a new question's request then goes out while
the question and its answer are stored (a request whose rows cannot be stored is cancelled),
and no text is shown before both exist. The answer is created as ``streaming`` and saved with
a heartbeat at least every second (:class:`behest_chat.conversations.TurnRecorder`), and
every ending — done, Stop, upstream error, cut stream, idle timeout, server shutdown —
closes the upstream request, keeps the text that arrived and marks the answer with the
reason:

- 401: the client re-mints the token and retries once by itself;
- 402: the tier's daily quota, with limit, usage and reset time; no retry, and later sends
  from this tab are refused without a request until the reset;
- 429: a countdown from ``Retry-After`` (``phase == "rate_limited"``), then the request again;
- 5xx (after the client's own retries), cut stream, idle timeout: partial kept, Retry.

A page that opens a conversation whose last answer is still streaming shows it: the running
task of this tab keeps pushing to the same state; any other tab (or worker) follows the row
in the database until it ends. An answer whose heartbeat stopped (its server went away) is
marked ``interrupted`` with Retry. Retry and Regenerate add a new version of the answer and
an edited question a new version of the question; the earlier versions stay one click away.

Browser-direct turns (the user's transport is ``"direct"``, :mod:`behest_chat.preferences`)
follow the same lifecycle: the question is stored, the budgets are checked, the answer is
created as ``streaming`` and its heartbeat kept by the server, but the page itself streams
from Behest (``assets/direct.js``) and hands the ending to :meth:`ChatState.finish_direct_turn`,
which stores it with the same status, sentence and Retry as a relayed turn. Which answer it
ends is held server-side (answer id and run stamp), never taken from the page.

Token usage comes from the stream's usage chunk (``stream_options.include_usage``); a stream
that ends before it is counted by the app (estimated prompt, one token per piece) so that
nothing spent goes unrecorded. Budgets are checked before a request is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import reflex as rx

from behest_chat import live_draft, routes
from behest_chat.accounts.sessions import SessionUser, resolve
from behest_chat.behest import DEFAULT_TIMEOUT, errors
from behest_chat.behest.streaming import ChatStream
from behest_chat.conversations import budgets, store
from behest_chat.conversations.models import Conversation
from behest_chat.conversations.recorder import TurnRecorder
from behest_chat.conversations.store import MessageView
from behest_chat.db import reading_scope
from behest_chat.direct import (
    RUNNING_SCRIPT,
    STOP_SCRIPT,
    DirectTurn,
    read_direct_turn,
    run_turn_script,
)
from behest_chat.inflight import turns
from behest_chat.services import get_client
from behest_chat.settings import get_settings
from behest_chat.state.auth import AuthState
from behest_chat.state.failures import describe_error, explain_failure
from behest_chat.state.turn_store import (
    BUSY,
    CONTINUE_PROMPT,
    MAX_QUESTION_CHARS,
    MISSING,
    NOT_LOADED,
    Ending,
    Outcome,
    PageRead,
    SendCheck,
    SendStart,
    Turn,
    TurnEndRows,
    TurnStart,
    answer_is_live,
    begin_turn,
    check_send,
    message_rows,
    read_page,
    search_sidebar,
    sidebar_rows,
    store_ending,
    store_send,
    store_send_ending,
    too_long,
    turn_end_rows,
    turn_start_rows,
    user_allowance,
    user_message,
)

__all__ = ["ChatState", "conversation_path"]

logger = logging.getLogger("behest_chat.chat")

_RATE_LIMIT_RETRIES = 3
_FINAL_UPDATE_RETRIES_S = (0.2, 0.5, 1.0, 2.0, 4.0, None)
_FOLLOW_INTERVAL_S = 0.3
_WAITING_AFTER_S = 0.25
# A send that overtook its page's load looks again after each of these pauses (s).
_LOAD_WAITS_S = (0, 0.05, 0.1, 0.2, 0.4, 0.8)
_PROCESS_ID = uuid.uuid4().hex[:12]
# Conversation id → client token of the tab whose state a turn of this process updates.
_attached: dict[str, str] = {}
# Answer id → the recorder of a relayed turn of this process (its text is ahead of the row).
_recorders: dict[int, TurnRecorder] = {}
# Run stamp of a browser-direct turn → (its loop, the event its task waits on until the
# page reports).
_direct_waits: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

# The answer being written, as a row (its text is the page's: live_draft.py).
_LIVE_ROW = {
    "role": "assistant",
    "live": "1",
    "status": "streaming",
    **dict.fromkeys(
        ("content", "error", "kind", "trace_id", "tokens", "retry", "regenerate", "continue"), ""
    ),
    "version": "1",
    "versions": "1",
}
# Rows ``_recent`` holds before they are folded into ``messages`` (one resend of the window).
_RECENT_ROWS = 8

# With this many answers streaming in this process, each one's socket is read once per
# flush interval instead of once per token (ChatStream.read_pause): the page gets pieces no
# more often than that anyway, and a token then costs about half the CPU. Only after the
# first piece: the stream's first event carries no text, and holding the read behind it
# would hold the first token back by a whole interval.
_BATCHED_READS_FROM = 16

# A browser-direct turn whose page never reports back (tab closed) ends as interrupted then.
_DIRECT_TURN_LIMIT_S = 600.0

SCROLL_TO_LATEST_JS = "window.behestScroll && window.behestScroll.follow()"


def conversation_path(conversation_id: str) -> str:
    """The page of one conversation."""
    return f"{routes.CHAT}/{conversation_id}"


class ChatState(AuthState):
    """The open conversation of one tab, its sidebar, and the turn in progress."""

    # Reflex copies var defaults into every tab's state, so a list default is safe here.
    messages: list[dict[str, str]] = []  # noqa: RUF012
    # The rows shown after ``messages`` since the window was last set whole: a turn appends
    # its question and answer here, so what goes to the page is a few rows, not the whole
    # window (Reflex resends a changed list var whole). Folded in at _RECENT_ROWS. The page
    # gets them through ``tail``.
    _recent: list[dict[str, str]] = []  # noqa: RUF012
    # The id of the last row shown: Regenerate and Continue are offered on that row only,
    # so a new question moves them on without rewriting the row that had them.
    last_row_id: str = ""
    has_older: bool = False
    # The answer whose text in progress is shown; the text itself travels as pieces
    # (behest_chat.live_draft), never as a var.
    live_answer_id: int = 0
    # "" | "connecting" | "waiting" | "streaming" | "rate_limited"
    phase: str = ""
    retry_in: int = 0
    conversation_id: str = ""
    title: str = ""
    missing: bool = False
    notice: str = ""
    notice_kind: str = ""
    allowance: str = ""
    conversations: list[dict[str, str]] = []  # noqa: RUF012
    search: str = ""
    live_status: str = ""
    sidebar_open: bool = False
    editing_id: str = ""
    rename_id: str = ""
    rename_title: str = ""
    delete_id: str = ""
    delete_title: str = ""
    # The composer's text when the chat page mounts: the open conversation's draft.
    composer_seed: str = ""
    _seeded_for: str = ""
    # The page the tab's state shows (``load``, or a send's new conversation): a send
    # from another page overtook that page's load.
    _loaded_path: str = ""
    # The page of a conversation a send created and shows already: its redirect's load
    # has nothing to read (set at the turn's start, cleared by the next load).
    _shown_by_send: str = ""
    _new_draft: str = ""
    _quota_until: float = 0.0
    _quota_tier: int = 0
    _quota_message: str = ""
    _follow_generation: int = 0
    # The page streams the answer itself (browser-direct): it renders the draft element.
    direct: bool = False
    # The browser-direct turn this tab waits for: set by the server, never by the page.
    _direct_conversation_id: str = ""
    _direct_answer_id: int = 0
    _direct_run_id: str = ""
    _direct_session_id: str = ""
    _direct_prefix: str = ""
    _direct_prompt_tokens: int = 0

    @rx.var
    def tail(self) -> list[dict[str, str]]:
        """The rows since the window was last set whole, then the answer being written while a
        turn runs.

        One row component renders both (``components/message.py``): when the turn ends,
        the stored answer takes the place of the live row, with the same key.
        """
        if not self.phase:
            return self._recent
        return [*self._recent, {**_LIVE_ROW, "id": str(self.live_answer_id)}]

    @rx.var
    def busy(self) -> bool:
        """True while a turn of this conversation is in progress (Stop replaces Send)."""
        return self.phase != ""

    # ── Opening conversations ────────────────────────────────────────────────

    @rx.event
    async def load(self):
        """on_load of ``/chat`` and ``/chat/<id>``: the conversation, sidebar and allowance.

        Read in a database thread, in one trip: the event loop serves the other tabs
        meanwhile (this tab's state stays locked until the page is shown).
        """
        secret, path = self._session_secret(), self.router.url.path
        page, shown_by_send = _page(path), self._shown_by_send
        conversation_id = _conversation_in(path)
        read = None
        if page == shown_by_send:
            user = await self._look_up_user()
        else:
            read = await asyncio.to_thread(read_page, secret, conversation_id, self.search)
            user = read.user
            self._show_user(user)
        if user is None:
            return rx.redirect(routes.LOGIN)
        self._follow_generation += 1
        self._loaded_path, self._shown_by_send = page, ""
        self.notice = self.notice_kind = ""
        self.sidebar_open = False
        self.editing_id = ""
        events: list[Any] = [rx.call_script(SCROLL_TO_LATEST_JS)]
        if read is None:
            # The send that created this conversation shows it, its sidebar and allowance.
            events += self._own_answer_so_far()
        else:
            events += self._show_page(conversation_id, read)
        if self._direct_run_id:
            # A reload kills the page's fetch; only the page can tell whether it still runs.
            events.append(rx.call_script(RUNNING_SCRIPT, callback=ChatState.check_direct_page))
        return events

    def _show_page(self, conversation_id: str, read: PageRead) -> list[Any]:
        """Show the conversation the address names (or none), the sidebar and allowance."""
        events: list[Any] = []
        if not conversation_id:
            self._show_nothing()
            self.missing = False
            events += self._seed_composer("", self._new_draft)
        elif read.conversation is None:
            self._show_nothing()
            self.missing = True
            events += self._seed_composer(conversation_id, "")
        else:
            self.missing = False
            events += self._open(read.conversation, read.views, read.has_older)
            events += self._seed_composer(conversation_id, read.conversation.draft)
        self._show_sidebar(read.conversations)
        if read.allowance != self.allowance:
            self.allowance = read.allowance
        return events

    @rx.event
    async def check_direct_page(self, running: Any):
        """The page's answer to "is your browser-direct turn still running?" (on load).

        A page that was reloaded (or whose scripts are not loaded yet) runs no turn: the
        turn this tab's state still holds open can never be reported, so it ends now as
        ``interrupted`` with the text the server has, instead of at ``_DIRECT_TURN_LIMIT_S``.
        """
        if running is True or not self._direct_run_id:
            return
        conversation_id, answer_id = self._direct_conversation_id, self._direct_answer_id
        run_id, prefix = self._direct_run_id, self._direct_prefix
        prompt_tokens = self._direct_prompt_tokens
        outcome = Outcome()
        outcome.sent = True

        def end_held_turn(user: SessionUser) -> tuple[bool | None] | None:
            ending = _held_direct_ending(
                user, conversation_id, answer_id, run_id, outcome, prefix, prompt_tokens, 0
            )
            return None if ending is None else (store_ending(ending, count_unowned=False),)

        user, ended = await self._as_user(end_held_turn)
        if user is None or ended is None:
            self._forget_direct_turn()
            return
        await self._show_direct_ending(user, conversation_id, run_id, outcome, ended[0])

    async def _show_direct_ending(
        self,
        user: SessionUser,
        conversation_id: str,
        run_id: str,
        outcome: Outcome,
        stored: bool | None,
        rows: TurnEndRows | None = None,
    ) -> None:
        """Let the browser-direct turn go, and show its ending unless another came first."""
        _release_direct(run_id)
        if stored is not False:  # stored, or not stored for a database failure
            await self._show_ending(user, conversation_id, run_id, outcome, rows)
        else:
            self._forget_direct_turn()

    def _seed_composer(self, conversation_id: str, text: str) -> list[Any]:
        """The events that put a conversation's draft in the composer, if the conversation
        or its draft changed since the last time (``assets/composer.js`` keeps what was
        typed on the page since it opened)."""
        if (conversation_id, text) == (self._seeded_for, self.composer_seed):
            return []
        self._seeded_for, self.composer_seed = conversation_id, text
        return [rx.call_script(f"behestSeedComposer({json.dumps(text)})")]

    def _own_answer_so_far(self) -> list[Any]:
        """The text so far of the answer this tab's turn writes in this process, for a page
        that may be loaded afresh (a page that kept its draft ignores what it has)."""
        recorder = _recorders.get(self.live_answer_id)
        if recorder is None or not recorder.text:
            return []
        if self.phase != "rate_limited":
            self.phase = "streaming"
        return [live_draft.put(recorder.message_id, 0, recorder.text)]

    def _show_nothing(self) -> None:
        self.conversation_id = self.title = ""
        self._show_window([])
        self.has_older = False
        self.phase = ""

    def _open(
        self, conversation: Conversation, views: list[MessageView], has_older: bool
    ) -> list[Any]:
        """Show a conversation's window as read; returns the events that show a live
        answer's text so far and, when another task or process writes it, follow it."""
        conversation_id = self.conversation_id = conversation.id
        self.title = conversation.title
        self.has_older = has_older
        live = views[-1] if views and views[-1].status == "streaming" else None
        self._show_window(message_rows(views[:-1] if live else views))
        if live is None:
            self.phase = ""
            return []
        ours = _attached.get(conversation_id) == self.router.session.client_token
        recorder = _recorders.get(live.id) if ours else None
        # This tab's own running turn is ahead of the saved text.
        text = recorder.text if recorder is not None else live.content
        self.live_answer_id = live.id
        # The running turn leaves its phase as it was once text flows: say so on a reload.
        if not ours or not self.phase or (text and self.phase != "rate_limited"):
            self.phase = "streaming"
        events: list[Any] = [live_draft.put(live.id, 0, text)]
        if not (ours and turns.running(conversation_id)):
            events.append(ChatState.follow(live.id, len(text)))
        return events

    @rx.event(background=True)
    async def follow(self, message_id: int, shown: int = 0):
        """Show an answer that another tab or process is writing, until it ends; the page
        already has its first ``shown`` characters.

        The row is read under the state lock: the writer stores the ending before it resets
        the tab, so the follower can never put back an answer that has just ended.
        """
        async with self:
            user = await self._look_up_user()
            generation = self._follow_generation
            conversation_id = self.conversation_id
        if user is None:
            return
        while True:
            await asyncio.sleep(_FOLLOW_INTERVAL_S)  # polling the database row
            async with self:
                # A page load, or a turn this tab started since: stop following.
                if self._follow_generation != generation or self.live_answer_id != message_id:
                    return
                # In a database thread: the event loop serves the other tabs meanwhile.
                answer = await asyncio.to_thread(store.message_for_user, user.user_id, message_id)
                if answer is not None and answer.conversation_id != conversation_id:
                    return
                live = answer is not None and store.is_live(answer)
                if live:
                    if not self.phase:
                        self.phase = "streaming"
                elif not self.phase:
                    # The turn's own task, in another process, showed its end in this tab,
                    # whose next turn may be stored already: reading the window now would
                    # show that turn's question and answer twice.
                    return
                else:
                    stale = answer is not None and answer.status == "streaming"
                    rows = await asyncio.to_thread(
                        _rows_after_follow, user, conversation_id, self.search, stale
                    )
                    self._show_window(rows.messages or [])
                    self.has_older = rows.has_older
                    self._show_sidebar(rows.conversations or [])
                    self.allowance = rows.allowance
                    self.phase = ""
                    self.live_status = "The answer finished."
            if not live:
                return
            # The page never shortens the text, so a saved row behind it does no harm.
            assert answer is not None
            if len(answer.content) > shown:
                yield live_draft.put(message_id, shown, answer.content[shown:])
                shown = len(answer.content)

    # The handlers below read and write the database in a thread, one trip each, like every
    # other: while one waits on it, the event loop serves the worker's other tabs.

    @rx.event
    async def load_older(self):
        """Prepend the page of messages above the oldest one shown."""
        shown, conversation_id = self._shown(), self.conversation_id
        oldest = _int(shown[0].get("id")) if shown else None
        if not conversation_id or oldest is None:
            return
        _, page = await self._as_user(
            lambda user: store.window(user.user_id, conversation_id, before_id=oldest)
        )
        if page is not None:
            views, self.has_older = page
            self._show_window(message_rows(views) + shown)

    @rx.event
    async def show_version(self, message_id: str, step: int):
        """Show the previous (-1) or next (+1) version of a message."""
        target, conversation_id = _int(message_id), self.conversation_id
        if target is None or step not in (-1, 1) or self.busy:
            return

        def select(user: SessionUser) -> tuple[list[MessageView], bool] | None:
            message = store.message_for_user(user.user_id, target)
            if message is None or message.conversation_id != conversation_id:
                return None
            if not store.select_version(user.user_id, target, step):
                return None
            return store.window(user.user_id, conversation_id)

        _, window = await self._as_user(select)
        if window is not None:
            views, self.has_older = window
            self._show_window(message_rows(views))

    # ── Sidebar ──────────────────────────────────────────────────────────────

    @rx.event
    async def set_search(self, value: str):
        """Filter the sidebar by title and text (a scan of the user's messages: read in a
        database thread, so other tabs are not held up)."""
        self.search = str(value)[:200]
        user, found = await asyncio.to_thread(search_sidebar, self._session_secret(), self.search)
        self._show_user(user)
        if user is not None:
            self._show_sidebar(found)

    @rx.event
    def toggle_sidebar(self):
        """Show or hide the conversation list on narrow screens."""
        self.sidebar_open = not self.sidebar_open

    @rx.event
    async def start_rename(self, conversation_id: str):
        """Open the rename dialog for one of the user's conversations."""
        _, conversation = await self._as_user(
            lambda user: store.get_conversation(user.user_id, conversation_id)
        )
        if conversation is not None:
            self.rename_id, self.rename_title = conversation.id, conversation.title

    @rx.event
    def cancel_rename(self):
        """Close the rename dialog."""
        self.rename_id = self.rename_title = ""

    @rx.event
    async def save_rename(self, form_data: dict[str, Any]):
        """Store the new title of the conversation named in the dialog."""
        title, renamed, search = str(form_data.get("title", "")), self.rename_id, self.search
        if not renamed:
            return None

        def rename(user: SessionUser) -> tuple[str | None, list[dict[str, str]]] | None:
            try:
                stored = store.rename_conversation(user.user_id, renamed, title)
            except ValueError:
                return None
            return stored, sidebar_rows(store.list_conversations(user.user_id, search))

        user, done = await self._as_user(rename)
        if user is None:
            return None
        if done is None:
            return rx.toast.error("A title cannot be empty.")
        stored, conversations = done
        if stored is not None and renamed == self.conversation_id:
            self.title = stored
        self.rename_id = self.rename_title = ""
        self._show_sidebar(conversations)
        return None

    @rx.event
    async def ask_delete(self, conversation_id: str):
        """Ask for confirmation before deleting one of the user's conversations."""
        _, conversation = await self._as_user(
            lambda user: store.get_conversation(user.user_id, conversation_id)
        )
        if conversation is not None:
            self.delete_id, self.delete_title = conversation.id, conversation.title

    @rx.event
    def cancel_delete(self):
        """Keep the conversation."""
        self.delete_id = self.delete_title = ""

    @rx.event
    async def confirm_delete(self):
        """Delete the conversation named in the dialog (a running turn is stopped first)."""
        doomed, self.delete_id, self.delete_title = self.delete_id, "", ""
        if not doomed:
            return None
        user, owned = await self._as_user(lambda user: store.get_conversation(user.user_id, doomed))
        if user is None or owned is None:
            return None
        await turns.cancel(doomed)
        search = self.search

        def delete() -> list[dict[str, str]]:
            store.delete_conversation(user.user_id, doomed)
            return sidebar_rows(store.list_conversations(user.user_id, search))

        self._show_sidebar(await asyncio.to_thread(delete))
        if doomed == self.conversation_id:
            return rx.redirect(routes.CHAT)
        return None

    @rx.event
    async def remember_draft(self, value: str):
        """on_blur of the composer: keep unsent text with its conversation."""
        text, conversation_id = str(value)[:MAX_QUESTION_CHARS], self.conversation_id
        if not conversation_id:
            if await self._look_up_user() is not None:
                self._new_draft = text
            return
        await self._as_user(lambda user: store.save_draft(user.user_id, conversation_id, text))

    @rx.event
    def dismiss_notice(self):
        """Hide the notice above the composer."""
        self.notice = self.notice_kind = ""

    # ── Turns ────────────────────────────────────────────────────────────────

    @rx.event
    async def stop(self):
        """Stop this conversation's answer; the upstream request is closed at once.

        The stop is marked in a database thread: the event loop serves other tabs meanwhile.
        """
        if not self.conversation_id:
            return None
        user, marked = await asyncio.to_thread(
            _mark_stop, self._session_secret(), self.conversation_id
        )
        self._show_user(user)
        if marked is None:
            return None
        if self.direct and self._direct_conversation_id == self.conversation_id:
            # The page aborts its fetch and reports the partial answer as "stopped".
            return rx.call_script(STOP_SCRIPT)
        await turns.cancel(self.conversation_id)
        return None

    @rx.event(background=True)
    async def send(self, form_data: dict[str, Any]):
        """Store the composer's question and stream the answer."""
        text = str(form_data.get("prompt", "")).strip()
        if not text:
            return
        if len(text) > MAX_QUESTION_CHARS:  # the page holds such a question back itself
            async with self:
                self._say(too_long(len(text)), "too_long")
            yield rx.set_value("prompt", text)
            return
        # Read as this event found the tab, without taking the lock; the session is resolved
        # in the database's thread with the send's other reads, not on the event loop.
        secret, page = self._session_secret(), _page(self.router.url.path)
        if page != self._loaded_path and not await self._wait_for_load(page):
            yield rx.set_value("prompt", text)
            return
        conversation_id = self.conversation_id
        # The row the question will follow, if the tab is up to date.
        last = self._last_shown()
        shown_last = last["id"] if last is not None else ""
        if self.busy or (conversation_id and turns.running(conversation_id)):
            async with self:
                self._say(BUSY, "busy")
            yield rx.set_value("prompt", text)
            return
        quota_tier = self._quota_tier if self._quota_until > time.time() else None
        # One trip to a database thread checks and stores the question; the request goes out
        # from the event loop as soon as the checks pass, while the thread stores it.
        loop = asyncio.get_running_loop()
        opened: list[asyncio.Task[ChatStream]] = []
        abandoned = False

        def send_request(user: SessionUser, check: SendCheck) -> None:
            def start() -> None:
                if not abandoned:
                    opened.append(
                        asyncio.create_task(_open_stream(user, check.session_id, check.history))
                    )

            # Runs before this task resumes: both go through the loop's queue in order.
            loop.call_soon_threadsafe(start)

        try:
            user, check, sent = await asyncio.to_thread(
                _check_and_store, secret, conversation_id, text, quota_tier, send_request
            )
        except BaseException:
            abandoned = True  # a request not started yet never starts
            await _discard(opened[0] if opened else None)
            raise
        opening = opened[0] if opened else None
        if user is None:
            yield rx.redirect(routes.LOGIN)
            return
        if check is None or check.refusal is not None:
            async with self:
                if check is None:  # the tier's quota is spent until the gateway's day ends
                    kind, sentence = "quota", self._quota_message
                else:
                    kind, sentence = check.refusal or ("missing", MISSING)
                    if check.allowance is not None:
                        self.allowance = check.allowance.summary()
                self._say(sentence, kind)
            if kind != "missing":
                yield rx.set_value("prompt", text)
            return
        assert sent is not None
        if sent.turn is None or sent.start is None:
            await _discard(opening)
            async with self:
                self._say(MISSING, "missing")
            return
        turn, start = sent.turn, sent.start
        question = start.question
        assert question is not None
        if not sent.created and shown_last != str(question.parent_id or ""):
            # The tab showed an older state of the branch (another tab wrote meanwhile).
            shown = await asyncio.to_thread(
                turn_start_rows, user, turn.conversation_id, self.search, start.answer.id or 0
            )
            start = dataclasses.replace(start, shown=shown)
        async for update in self._run(turn, start, created=sent.created, opening=opening):
            yield update

    async def _wait_for_load(self, page: str) -> bool:
        """Wait for the load of ``page`` that an event from that page overtook.

        Events race for the state lock, so Enter pressed as a page opens can run before
        that page's load: the tab would still show the conversation it showed before.
        """
        for delay in _LOAD_WAITS_S:
            await asyncio.sleep(delay)
            async with self:
                if page == self._loaded_path:
                    return True
        async with self:
            self._say(NOT_LOADED, "busy")
        return False

    @rx.event(background=True)
    async def regenerate(self, message_id: str):
        """Ask again for an answer (Retry on a failed one); the old version stays reachable."""
        async for update in self._answer_again(message_id, continuing=False):
            yield update

    @rx.event(background=True)
    async def retry(self, message_id: str):
        """Retry a failed or stopped answer as a new version of it."""
        async for update in self._answer_again(message_id, continuing=False):
            yield update

    @rx.event(background=True)
    async def continue_answer(self, message_id: str):
        """Let the model go on from where a stopped or cut answer ended."""
        async for update in self._answer_again(message_id, continuing=True):
            yield update

    @rx.event
    async def start_edit(self, message_id: str):
        """Show the edit box on one of the user's questions."""
        target = _int(message_id)
        if target is None:
            return
        _, message = await self._as_user(lambda user: store.message_for_user(user.user_id, target))
        if (
            message is not None
            and message.role == "user"
            and message.conversation_id == self.conversation_id
            and not self.busy
        ):
            self.editing_id = str(target)

    @rx.event
    def cancel_edit(self):
        """Close the edit box."""
        self.editing_id = ""

    @rx.event(background=True)
    async def submit_edit(self, form_data: dict[str, Any]):
        """Send an edited question as a new version; the original and its answers stay."""
        text = str(form_data.get("text", "")).strip()
        if len(text) > MAX_QUESTION_CHARS:  # the edit stays open with its text
            async with self:
                self._say(too_long(len(text)), "too_long")
            return
        async with self:
            user = await self._look_up_user()
            edited = _int(self.editing_id)
            conversation_id = self.conversation_id
        live = await _has_live_answer(user, conversation_id)
        async with self:
            refusal = self._refusal_before_send(user, conversation_id, live)
            self.editing_id = ""
        if user is None or edited is None or not text or refusal is not None:
            return
        original = await asyncio.to_thread(store.message_for_user, user.user_id, edited)
        conversation = await asyncio.to_thread(
            store.get_conversation, user.user_id, conversation_id
        )
        if (
            original is None
            or conversation is None
            or original.role != "user"
            or original.conversation_id != conversation_id
        ):
            return
        history = (
            await asyncio.to_thread(store.branch_history, conversation_id, original.parent_id)
            if original.parent_id is not None
            else []
        )
        if await self._over_budget(user, conversation_id, [*history, user_message(text)]):
            return
        question = await asyncio.to_thread(
            store.add_user_message, user.user_id, conversation_id, text, original.parent_id
        )
        if question is None or question.id is None:
            return
        turn = Turn(user, conversation_id, conversation.session_id, question.id)
        async for update in self._begin_and_run(turn):
            yield update

    async def _answer_again(self, message_id: str, *, continuing: bool) -> AsyncIterator[Any]:
        async with self:
            user = await self._look_up_user()
            conversation_id = self.conversation_id
        live = await _has_live_answer(user, conversation_id)
        async with self:
            refusal = self._refusal_before_send(user, conversation_id, live)
        target = _int(message_id)
        if user is None or target is None or refusal is not None:
            return
        answer = await asyncio.to_thread(store.message_for_user, user.user_id, target)
        conversation = await asyncio.to_thread(
            store.get_conversation, user.user_id, conversation_id
        )
        if (
            answer is None
            or conversation is None
            or answer.role != "assistant"
            or answer.conversation_id != conversation_id
            or answer.parent_id is None
            or answer.status == "streaming"
        ):
            return
        history = await asyncio.to_thread(store.branch_history, conversation_id, answer.parent_id)
        if continuing:
            if not answer.content:
                return
            history = [*history, {"role": "assistant", "content": answer.content}]
            history.append(user_message(CONTINUE_PROMPT))
        if await self._over_budget(user, conversation_id, history):
            return
        turn = Turn(
            user,
            conversation_id,
            conversation.session_id,
            answer.parent_id,
            continue_id=answer.id if continuing else None,
        )
        async for update in self._begin_and_run(turn):
            yield update

    def _refusal_before_send(
        self, user: SessionUser | None, conversation_id: str, live: bool
    ) -> str | None:
        """Under the lock: why nothing may be sent now (busy, or the tier's quota is spent).

        ``live`` is :func:`_has_live_answer`, read before the lock is taken.
        """
        if user is None:
            return "signed out"
        writing = conversation_id and (turns.running(conversation_id) or live)
        if self.busy or writing:
            self._say(BUSY, "busy")
            return "busy"
        if self._quota_until > time.time() and self._quota_tier == user.tier:
            self._say(self._quota_message, "quota")
            return "quota"
        return None

    async def _over_budget(
        self, user: SessionUser, conversation_id: str, messages: Sequence[dict[str, str]]
    ) -> bool:
        """Check the budgets before sending; say why when the request must not go out."""
        allowance = await asyncio.to_thread(user_allowance, user, conversation_id)
        return await self._refuse_over_budget(allowance, messages)

    async def _refuse_over_budget(
        self, allowance: budgets.Allowance, messages: Sequence[dict[str, str]]
    ) -> bool:
        """Whether ``messages`` would go beyond ``allowance``; if so, say why."""
        refusal = allowance.refusal_for(messages)
        if refusal is None:
            return False
        async with self:
            self._say(refusal[1], refusal[0])
            self.allowance = allowance.summary()
        return True

    async def _begin_and_run(self, turn: Turn) -> AsyncIterator[Any]:
        """Create (or reopen) the answer of an edit, Retry, Regenerate or Continue; run it."""
        # One trip to a thread for everything the database gives the start of a turn; the
        # search is read outside the lock (the value the last lock left).
        start = await asyncio.to_thread(begin_turn, turn, _new_run_id(), self.search)
        if start is None:
            return
        async for update in self._run(turn, start):
            yield update

    async def _run(
        self,
        turn: Turn,
        start: TurnStart,
        *,
        created: bool = False,
        opening: asyncio.Task[ChatStream] | None = None,
    ) -> AsyncIterator[Any]:
        """Stream the answer ``start`` created, and end it the same way whatever happens.

        ``opening``: the request, if the send already made it (see :meth:`send`).
        """
        conversation_id, run_id = turn.conversation_id, start.run_id
        if start.transport == "direct":
            await _discard(opening)
            async for update in self._run_direct(turn, run_id, start, created=created):
                yield update
            return
        answer, history = start.answer, start.history
        assert answer.id is not None
        prefix = answer.content
        task = asyncio.current_task()
        assert task is not None
        async with self:
            client_token = self.router.session.client_token
            self._show_turn_start(conversation_id, start, created=created)
        turns.register(conversation_id, task)
        _attached[conversation_id] = client_token
        recorder = TurnRecorder(answer.id, run_id, prefix)
        _recorders[answer.id] = recorder
        # A lost answer is no longer this run's: stop reading it.
        recorder.start_saving(on_lost=lambda: turns.cancel_once(task))
        outcome = Outcome()
        # A send's new answer follows the question the tab appended: its ending can be
        # shown without reading the conversation again.
        follows = ""
        if start.question is not None and start.shown is None and not prefix:
            follows = start.question.row["id"]
        try:
            if prefix:  # Continue: the page shows the kept text first
                with turns.sending(task):
                    yield live_draft.put(answer.id, 0, prefix)
            if created:
                # The address becomes the conversation's, so a reload finds it again.
                with turns.sending(task):
                    yield rx.redirect(conversation_path(conversation_id))
            async for update in self._stream(turn, history, recorder, outcome, opening):
                with turns.sending(task):
                    yield update
        except (asyncio.CancelledError, GeneratorExit) as exc:
            # Cancelled (a Stop waits while Reflex sends an update: turns.sending); or
            # closed at an update whose sending Reflex itself gave up (GeneratorExit).
            if isinstance(exc, asyncio.CancelledError):
                task.uncancel()
            recorder.stop_saving()  # the turn is ending: no second cancel
            stopped = not recorder.lost and await asyncio.to_thread(store.stop_requested, answer.id)
            # Not the user's Stop: the server is shutting down, or another process took over.
            ending = "stopped" if stopped else "interrupted"
            outcome.end(ending, ending)
        except TimeoutError:  # no answer headers within the idle timeout (_open_stream)
            outcome.end("error", "timeout")
        except errors.BehestError as exc:
            kind, text = explain_failure(exc)
            outcome.end("error", kind, text, exc.trace_id)
        except Exception:  # a bug must still end the turn, not leave a spinner
            logger.exception("a chat turn failed")
            outcome.end("error", *describe_error(RuntimeError()))
        finally:
            recorder.stop_saving()
            await _discard(opening)  # never awaited if the turn ended before its request
            turns.unregister(conversation_id, task)
            _recorders.pop(answer.id, None)
            if _attached.get(conversation_id) == client_token:
                del _attached[conversation_id]
            await self._finish(
                turn, answer.id, run_id, recorder, history, outcome, follows=follows
            )

    async def _run_direct(
        self, turn: Turn, run_id: str, start: TurnStart, *, created: bool
    ) -> AsyncIterator[Any]:
        """Let the page stream the answer from Behest; keep the answer alive until it reports.

        The answer row is created and heartbeated here exactly as for a relayed turn, so
        other tabs see it live and Stop finds it; :meth:`finish_direct_turn` ends it. A page
        that never reports back (closed) leaves it ``interrupted`` after
        ``_DIRECT_TURN_LIMIT_S``, or at once on server shutdown or deletion.
        """
        conversation_id = turn.conversation_id
        answer, history = start.answer, start.history
        assert answer.id is not None
        task = asyncio.current_task()
        assert task is not None
        async with self:
            client_token = self.router.session.client_token
            self._show_turn_start(conversation_id, start, created=created, phase="streaming")
            self.direct = True
            self._direct_conversation_id, self._direct_session_id = conversation_id, turn.session_id
            self._direct_answer_id, self._direct_run_id = answer.id, run_id
            self._direct_prefix = answer.content
            self._direct_prompt_tokens = budgets.estimate_prompt_tokens(history)
        turns.register(conversation_id, task)
        _attached[conversation_id] = client_token
        recorder = TurnRecorder(answer.id, run_id, answer.content)
        reported = asyncio.Event()
        _direct_waits[run_id] = (asyncio.get_running_loop(), reported)
        # A failed save means the answer is no longer this run's (ended elsewhere).
        recorder.start_saving(on_lost=reported.set)
        ended_here = False
        try:
            if answer.content:  # Continue: the page shows the kept text first
                yield live_draft.put(answer.id, 0, answer.content)
            # The page starts the turn before it moves to the conversation's address, so
            # the load that move triggers finds the turn running (check_direct_page).
            yield rx.call_script(
                run_turn_script(
                    base_url=get_settings().behest_public_base_url,
                    messages=history,
                    session_id=turn.session_id,
                    thread_id=None,
                    target="",
                    answer_id=answer.id,
                    offset=len(answer.content),
                ),
                callback=ChatState.finish_direct_turn,
            )
            if created:
                yield rx.redirect(conversation_path(conversation_id))
            await asyncio.wait_for(reported.wait(), timeout=_DIRECT_TURN_LIMIT_S)
        except TimeoutError:
            ended_here = True
        except asyncio.CancelledError:  # deleted, or the server is shutting down
            task.uncancel()
            ended_here = True
        finally:
            recorder.stop_saving()
            _direct_waits.pop(run_id, None)
            turns.unregister(conversation_id, task)
            if _attached.get(conversation_id) == client_token:
                del _attached[conversation_id]
        if ended_here:
            outcome = Outcome()
            outcome.sent = True
            await self._finish(turn, answer.id, run_id, recorder, history, outcome)

    @rx.event
    async def finish_direct_turn(self, result: dict[str, Any]):
        """The page's report of a browser-direct turn: store it like a relayed ending.

        Only the turn this tab's server state holds open is ended (conversation, answer id
        and run stamp come from the server, and are checked against the signed-in user);
        a report without one, or for an answer that already ended, changes nothing.

        Usage: the browser's figures cannot be trusted for budgets (a page can send any
        number), and asking the gateway's usage API per session before and after each turn
        would cost two requests and race with other turns of the same user. So the ledger
        gets the browser-reported figures, raised to at least the app's own estimate of the
        prompt it built and the text it stores, and marked ``estimated`` (shown as "≈")
        since they are not the gateway's own count. The gateway still meters the session.
        """
        conversation_id, answer_id, run_id = (
            self._direct_conversation_id,
            self._direct_answer_id,
            self._direct_run_id,
        )
        prefix, prompt_estimate, search = (
            self._direct_prefix,
            self._direct_prompt_tokens,
            self.search,
        )
        if not run_id:
            return None
        turn = read_direct_turn(result)

        def end_turn(user: SessionUser) -> tuple[Outcome, bool | None, TurnEndRows | None] | None:
            """Store the ending and read the rows after it (``None``: the turn is no longer
            held), in the same trip to a database thread as the user's lookup."""
            outcome = _direct_outcome(turn, user)
            reported = turn.usage or {}
            prompt_tokens = max(_count(reported.get("prompt_tokens")), prompt_estimate)
            completion_tokens = max(
                _count(reported.get("completion_tokens")), budgets.estimate_tokens(turn.text)
            )
            ending = _held_direct_ending(
                user,
                conversation_id,
                answer_id,
                run_id,
                outcome,
                prefix + turn.text,
                prompt_tokens,
                completion_tokens if turn.text or turn.status == "done" else 0,
            )
            if ending is None:
                return None
            stored = store_ending(ending, count_unowned=False)
            if stored is False:
                return outcome, stored, None
            return outcome, stored, _rows_after_turn(user, conversation_id, search)

        user, ended = await self._as_user(
            (lambda user: None) if turn.signed_out else end_turn
        )
        if user is None or turn.signed_out:
            # The run stamp never left the server: ending its own answer needs no user.
            await asyncio.to_thread(
                store.finish_answer,
                answer_id,
                run_id,
                status="error",
                content=prefix + turn.text,
                error_kind="auth",
                error="You are signed out. Sign in again, then retry.",
            )
            _release_direct(run_id)
            self._forget_direct_turn()
            self.phase = ""
            return rx.redirect(routes.LOGIN)
        if ended is None:
            self._forget_direct_turn()
            return None
        outcome, stored, rows = ended
        await self._show_direct_ending(user, conversation_id, run_id, outcome, stored, rows)
        return None

    async def _stream(
        self,
        turn: Turn,
        history: list[dict[str, str]],
        recorder: TurnRecorder,
        outcome: Outcome,
        opening: asyncio.Task[ChatStream] | None = None,
    ) -> AsyncIterator[Any]:
        """Send the request (waiting out 429s) and read the stream into ``recorder``.

        ``opening``: the first attempt, already sent.

        Yields the new text as pieces for the page at most every ``APP_STREAM_FLUSH_MS``
        (the first at once); only the phase change takes the state lock.
        """
        flush_seconds = get_settings().stream_flush_ms / 1000
        for attempt in range(_RATE_LIMIT_RETRIES + 1):
            try:
                if attempt == 0 and opening is not None:
                    stream = await opening
                else:
                    stream = await _open_stream(turn.user, turn.session_id, history)
                break
            except errors.RateLimitError as exc:
                if attempt == _RATE_LIMIT_RETRIES:
                    raise
                await self._count_down(turn.conversation_id, max(1, exc.retry_after or 1))
        outcome.sent = True
        outcome.trace_id = stream.trace_id or ""
        batched = turns.count_here() >= _BATCHED_READS_FROM
        # "Waiting for the model…" only if the first piece is slow to come: a fast model's
        # text makes that update needless (the text replaces the phase on the page).
        waiting = asyncio.create_task(
            self._show_later(_WAITING_AFTER_S, turn.conversation_id, phase="waiting")
        )
        last_push = 0.0
        shown = len(recorder.text)
        try:
            async with stream:
                # A stream idle for APP_STREAM_IDLE_TIMEOUT_S ends in the client's read
                # timeout (see _open_stream): no timer per chunk here.
                async for chunk in stream:
                    usage = chunk.get("usage")
                    if isinstance(usage, dict):
                        outcome.usage = usage
                    choices = chunk.get("choices") or []
                    piece = (choices[0].get("delta") or {}).get("content") if choices else None
                    if not piece:
                        continue
                    recorder.append(piece)
                    now, unsent = time.monotonic(), len(recorder.text) - shown
                    if live_draft.piece_due(unsent, now - last_push, flush_seconds):
                        waiting.cancel()
                        last_push = now
                        yield live_draft.put(recorder.message_id, shown, recorder.text[shown:])
                        shown = len(recorder.text)
                        if batched:
                            stream.read_pause = flush_seconds
        finally:
            waiting.cancel()
        outcome.end("done", "")

    async def _count_down(self, conversation_id: str, seconds: int) -> None:
        """429: show the wait second by second, then let the caller try again."""
        for left in range(seconds, 0, -1):
            await self._show(conversation_id, phase="rate_limited", retry_in=left)
            await asyncio.sleep(1)
        await self._show(conversation_id, phase="connecting", retry_in=0)

    async def _show_later(self, delay: float, conversation_id: str, **values: Any) -> None:
        await asyncio.sleep(delay)
        await self._show(conversation_id, **values)

    async def _show(self, conversation_id: str, **values: Any) -> None:
        """Update the tab, if it still shows this conversation.

        Best effort: the answer is saved in the database whatever happens here, so a state
        store that is briefly unreachable (Redis restarting) must not end the turn.
        """
        try:
            async with self:
                if self.conversation_id != conversation_id:
                    return
                for name, value in values.items():
                    setattr(self, name, value)
        except Exception as exc:
            logger.warning("tab not updated during a turn: %s", type(exc).__name__)

    async def _finish(
        self,
        turn: Turn,
        answer_id: int,
        run_id: str,
        recorder: TurnRecorder,
        history: list[dict[str, str]],
        outcome: Outcome,
        *,
        follows: str = "",
    ) -> None:
        """Store the ending and the usage, then show it.

        ``follows``: the id of the question row a send's new answer follows in the tab.
        """
        prompt_tokens = completion_tokens = 0
        estimated = False
        if outcome.usage is not None:
            prompt_tokens = _count(outcome.usage.get("prompt_tokens"))
            completion_tokens = _count(outcome.usage.get("completion_tokens"))
        elif outcome.sent:
            # The stream ended before its usage chunk; the gateway still counts what it sent.
            prompt_tokens = budgets.estimate_prompt_tokens(history)
            completion_tokens = recorder.chunks
            estimated = True
        user = turn.user

        def store_and_read() -> TurnEndRows | None:
            ending = Ending(
                turn,
                answer_id,
                run_id,
                outcome,
                recorder.text,
                prompt_tokens,
                completion_tokens,
                estimated,
            )
            if follows and not search and shown < store.DEFAULT_PAGE:
                # The tab gets the answer as stored; the window stays within its page.
                appended = store_send_ending(ending, follows)
                if appended is not None:
                    return appended
            else:
                store_ending(ending)
            return _rows_after_turn(user, turn.conversation_id, search)

        # As the tab last showed them (read without the lock; _show_ending checks again).
        search, shown = self.search, len(self.messages) + len(self._recent)
        rows = await asyncio.to_thread(store_and_read)
        # The tab must learn that the turn ended, or it would show a spinner forever: try
        # again for a few seconds if the state store is briefly unreachable.
        for delay in _FINAL_UPDATE_RETRIES_S:
            try:
                async with self:
                    await self._show_ending(user, turn.conversation_id, run_id, outcome, rows)
                return
            except Exception as exc:
                logger.warning("tab not updated after a turn: %s", type(exc).__name__)
                if delay is None:
                    return
                await asyncio.sleep(delay)

    # ── Helpers (called under the lock) ──────────────────────────────────────

    def _show_turn_start(
        self,
        conversation_id: str,
        start: TurnStart,
        *,
        created: bool,
        phase: str = "connecting",
    ) -> None:
        if created:
            # The box was just cleared by the send: the new page needs no draft put back.
            self._seeded_for, self.composer_seed = conversation_id, ""
            self._new_draft = ""
            # The tab shows the new conversation's page before the redirect opens it.
            self._loaded_path = _page(conversation_path(conversation_id))
            self._shown_by_send = self._loaded_path
        if created or self.conversation_id == conversation_id:
            self.conversation_id = conversation_id
            self.title = start.title
            self.missing = False
            if start.shown is not None:
                self._show_window(start.shown.messages)
                self.has_older = start.shown.has_older
                self._show_sidebar(start.shown.conversations)
            elif start.question is not None:
                self._append_question(start.question.row, created=created)
                self._put_on_top(conversation_id, start.title)
            self.live_answer_id, self.phase = start.answer.id or 0, phase
            self.notice = self.notice_kind = ""
            self.live_status = "Answering…"

    def _append_question(self, row: dict[str, str], *, created: bool) -> None:
        """Show a new question after the rows shown, without reading them again."""
        last = self._last_shown()
        if last is not None and last["id"] == row["id"]:
            return  # a reload between the send's store and now read it already
        if created:
            self._show_window([row])
            self.has_older = False
            return
        self._show_more(row)

    def _shown(self) -> list[dict[str, str]]:
        """Every row the tab shows, oldest first."""
        return [*self.messages, *self._recent]

    def _last_shown(self) -> dict[str, str] | None:
        if self._recent:
            return self._recent[-1]
        return self.messages[-1] if self.messages else None

    def _show_window(self, rows: list[dict[str, str]]) -> None:
        """Show ``rows`` as the whole window."""
        self.messages = rows
        if self._recent:
            self._recent = []
        self._mark_last(rows[-1]["id"] if rows else "")

    def _show_more(self, *rows: dict[str, str]) -> None:
        """Show ``rows`` after the rows shown."""
        if len(self._recent) + len(rows) > _RECENT_ROWS:
            self._show_window([*self.messages, *self._recent, *rows])
        else:
            self._recent = [*self._recent, *rows]
            self._mark_last(rows[-1]["id"])

    def _mark_last(self, row_id: str) -> None:
        if row_id != self.last_row_id:  # a var set, even to its value, is sent again
            self.last_row_id = row_id

    def _put_on_top(self, conversation_id: str, title: str) -> None:
        """Move the conversation to the top of the sidebar (its newest activity)."""
        if self.search:  # a filtered list is read again when the turn ends
            return
        shown = self.conversations
        if shown and shown[0]["id"] == conversation_id and shown[0]["title"] == title:
            return  # the usual case, a turn in the newest conversation: nothing to go through
        others = [c for c in shown if c["id"] != conversation_id]
        self._show_sidebar([{"id": conversation_id, "title": title}, *others])

    async def _show_ending(
        self,
        user: SessionUser,
        conversation_id: str,
        run_id: str,
        outcome: Outcome,
        rows: TurnEndRows | None = None,
    ) -> None:
        """Show a stored ending: the saved answer replaces the draft.

        ``rows``: read after the ending was stored, used if they still fit what the tab
        shows (the same conversation, search and last row); otherwise they are read again
        here, in a database thread.
        """
        if outcome.kind == "quota":
            # The gateway will refuse until its day ends: do not ask it again.
            self._quota_until = budgets.next_utc_midnight().timestamp()
            self._quota_tier, self._quota_message = user.tier, outcome.text
        if self._direct_run_id == run_id:
            self._forget_direct_turn()
        here = self.conversation_id == conversation_id
        last_id = last["id"] if (last := self._last_shown()) is not None else ""
        fits = (
            rows is not None
            and (rows.conversation_id, rows.search) == (self.conversation_id, self.search)
            and (rows.answer is None or last_id in (rows.after_id, rows.answer["id"]))
        )
        if not fits:
            rows = await asyncio.to_thread(
                turn_end_rows, user, self.conversation_id, self.search
            )
        assert rows is not None
        if here:
            if rows.answer is not None and last_id == rows.after_id:
                self._show_more(rows.answer)
            elif rows.answer is None and rows.messages is not None:
                self._show_window(rows.messages)
                self.has_older = rows.has_older
            # else: the page was loaded again after the ending was stored
            self.phase, self.retry_in = "", 0
            self.live_status = _LIVE_ENDINGS.get(outcome.status, "")
        if rows.conversations is not None:  # else unchanged since the turn began
            self._show_sidebar(rows.conversations)
        self.allowance = rows.allowance

    def _forget_direct_turn(self) -> None:
        self.direct = False
        self._direct_conversation_id = self._direct_run_id = self._direct_session_id = ""
        self._direct_prefix = ""
        self._direct_answer_id = self._direct_prompt_tokens = 0

    def _show_sidebar(self, conversations: list[dict[str, str]]) -> None:
        # Reflex resends a var on every assignment, and the list can be long: only on change.
        if conversations != self.conversations:
            self.conversations = conversations

    def _say(self, text: str, kind: str) -> None:
        self.notice, self.notice_kind = text, kind


def _held_direct_ending(
    user: SessionUser,
    conversation_id: str,
    answer_id: int,
    run_id: str,
    outcome: Outcome,
    text: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> Ending | None:
    """The ending of a browser-direct turn, if ``user`` owns its still-streaming answer and
    the run ``run_id`` still writes it (blocking); its tokens are the app's estimate."""
    answer = store.message_for_user(user.user_id, answer_id)
    conversation = store.get_conversation(user.user_id, conversation_id)
    if (
        answer is None
        or conversation is None
        or answer.conversation_id != conversation_id
        or answer.role != "assistant"
        or answer.run_id != run_id
        or answer.status != "streaming"
    ):
        return None
    turn = Turn(user, conversation_id, conversation.session_id, answer.parent_id or 0)
    return Ending(
        turn, answer_id, run_id, outcome, text, prompt_tokens, completion_tokens, estimated=True
    )


def _rows_after_turn(
    user: SessionUser, conversation_id: str, search: str
) -> TurnEndRows | None:
    """What the tab shows after a turn's ending was stored, read in the ending's database
    thread so the event loop never waits on it; ``None`` if the read fails (blocking)."""
    try:
        return turn_end_rows(user, conversation_id, search)
    except Exception:
        logger.exception("the rows after a chat turn were not read")
        return None


def _rows_after_follow(
    user: SessionUser, conversation_id: str, search: str, stale: bool
) -> TurnEndRows:
    """The rows once a followed answer ended; ``stale``: it was left ``streaming`` by a
    process that went away, and is marked interrupted first (blocking)."""
    if stale:
        store.interrupt_stale(conversation_id)
    return turn_end_rows(user, conversation_id, search)


def _mark_stop(secret: str, conversation_id: str) -> tuple[SessionUser | None, int | None]:
    """The signed-in user and the id of the answer their Stop marked, if any (blocking)."""
    user = resolve(secret) if secret else None
    if user is None:
        return None, None
    return user, store.request_stop(user.user_id, conversation_id)


def _check_and_store(
    secret: str,
    conversation_id: str,
    text: str,
    quota_tier: int | None,
    send_request: Callable[[SessionUser, SendCheck], None],
) -> tuple[SessionUser | None, SendCheck | None, SendStart | None]:
    """A send's database work in one trip to a thread (blocking): the signed-in user, the
    checks (none while their tier's quota is spent) and, if they pass, the stored question
    and answer. ``send_request`` is called between the two for a relayed turn, so its
    request is out while the rows are stored. The checks only read: on PostgreSQL no
    transaction surrounds them (:func:`~behest_chat.db.reading_scope`)."""
    with reading_scope() as db:
        user = resolve(secret, db=db)
        if user is None or user.tier == quota_tier:
            return user, None, None
        check = check_send(user, conversation_id, text, db=db)
        if check.refusal is not None:
            return user, check, None
        if check.transport == "relay":
            send_request(user, check)
        if store.asks_in_one_statement(db, check.conversation_id):
            # On the checks' connection: no second checkout, no BEGIN/COMMIT.
            return user, check, store_send(user, check, text, _new_run_id(), db=db)
    return user, check, store_send(user, check, text, _new_run_id())


async def _open_stream(
    user: SessionUser, session_id: str, history: list[dict[str, str]]
) -> ChatStream:
    """Send a relayed turn's request; the stream is open once the gateway's headers came.

    The idle timeout bounds the wait for the headers (retries included) and, as the read
    timeout, every wait for the next bytes of the answer.
    """
    idle = get_settings().stream_idle_timeout_s
    return await asyncio.wait_for(
        get_client().chat.completions.create(
            messages=history,
            stream=True,
            user_id=user.behest_user_id,
            tier=user.tier,
            session_id=session_id,
            timeout=httpx.Timeout(idle, connect=DEFAULT_TIMEOUT.connect),
            stream_options={"include_usage": True},
        ),
        timeout=idle,
    )


async def _discard(opening: asyncio.Task[ChatStream] | None) -> None:
    """Cancel a request sent ahead, or close its stream if nobody read it (else no-op)."""
    if opening is None or opening.cancel():
        return
    if not opening.cancelled() and opening.exception() is None:
        await opening.result().aclose()


def _new_run_id() -> str:
    """A turn's stamp on its answer: which process and which run writes it."""
    return f"{_PROCESS_ID}-{uuid.uuid4().hex[:8]}"


async def _has_live_answer(user: SessionUser | None, conversation_id: str) -> bool:
    """Whether the conversation's answer is being written (by any process), read in a thread."""
    if user is None or not conversation_id:
        return False
    return await asyncio.to_thread(answer_is_live, user, conversation_id)


_LIVE_ENDINGS = {
    "done": "The answer is complete.",
    "stopped": "Stopped. The partial answer is kept.",
    "error": "The answer failed. The partial answer is kept.",
    "interrupted": "The answer was interrupted. The partial answer is kept.",
}


def _release_direct(run_id: str) -> None:
    """Let a browser-direct turn's task end now, not at its next heartbeat."""
    waiting = _direct_waits.get(run_id)
    if waiting is not None:
        waiting[0].call_soon_threadsafe(waiting[1].set)


def _direct_outcome(turn: DirectTurn, user: SessionUser) -> Outcome:
    """The relay's outcome for what the page reported (same kinds and sentences)."""
    outcome = Outcome()
    outcome.sent = True
    outcome.trace_id = turn.trace_id
    if turn.status == "done":
        outcome.end("done", "")
    elif turn.status == "stopped":
        outcome.end("stopped", "stopped")
    else:
        error = turn.error or errors.BehestError("browser-direct turn failed")
        if isinstance(error, errors.QuotaExceededError):
            # The browser does not pass the 402's details on: the tier is the user's own.
            error.details.setdefault("tier", budgets.TIER_NAMES.get(user.tier, "free"))
        kind, text = explain_failure(error)
        outcome.end("error", kind, text, turn.trace_id)
    return outcome


def _page(path: str) -> str:
    """A page's address without its trailing slash (``/chat/`` and ``/chat`` are one)."""
    return path.rstrip("/") or "/"


def _conversation_in(path: str) -> str:
    """The conversation id in ``/chat/<id>/`` (empty for ``/chat``)."""
    parts = [p for p in (path or "").split("/") if p]
    return parts[1] if len(parts) >= 2 and parts[0] == routes.CHAT.strip("/") else ""


def _int(value: object) -> int | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if number > 0 else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
