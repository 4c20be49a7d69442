"""The database side of a chat turn: blocking functions, run in threads by :mod:`.chat`.

A send's checks only read (:func:`check_send`), so its request can go out while the question
and answer are stored in one transaction (:func:`store_send`);
edits, Retry, Regenerate and Continue create the answer with what the tab shows at the
turn's start (:func:`begin_turn`). The ending is stored with its usage (:func:`store_ending`;
a send's, with the allowance after it: :func:`store_send_ending`) and the tab's rows after
it are read in the same trip (:func:`turn_end_rows`).
:func:`message_rows` turns stored messages into the page's rows.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from behest_chat import live_draft
from behest_chat.accounts.sessions import SessionUser, resolve
from behest_chat.conversations import budgets, store
from behest_chat.conversations.models import Conversation, Message
from behest_chat.conversations.store import MessageView
from behest_chat.db import joined, reading_scope, session_scope
from behest_chat.preferences import get_transport
from behest_chat.settings import get_settings

__all__ = [
    "BUSY",
    "CONTINUE_PROMPT",
    "MAX_QUESTION_CHARS",
    "MISSING",
    "NOT_LOADED",
    "TOO_LONG",
    "Ending",
    "NewQuestion",
    "Outcome",
    "SendCheck",
    "SendStart",
    "Turn",
    "TurnEndRows",
    "TurnStart",
    "TurnStartRows",
    "answer_is_live",
    "begin_turn",
    "check_send",
    "ended_answer_row",
    "is_live",
    "message_rows",
    "open_answer",
    "sidebar_rows",
    "store_ending",
    "store_send",
    "store_send_ending",
    "too_long",
    "turn_end_rows",
    "turn_start_rows",
    "user_allowance",
    "user_message",
]

logger = logging.getLogger("behest_chat.chat")

# What Continue asks the model, after the partial answer.
CONTINUE_PROMPT = "Continue your previous answer exactly where it stopped. Do not repeat it."


@dataclass(frozen=True)
class Turn:
    """What a background turn needs: who asks, in which conversation, after which question."""

    user: SessionUser
    conversation_id: str
    session_id: str
    question_id: int
    continue_id: int | None = None


def open_answer(turn: Turn, run_id: str) -> tuple[Message | None, list[dict[str, str]]]:
    """Create (or reopen, for Continue) the ``streaming`` answer and the history to send."""
    user, conversation_id = turn.user, turn.conversation_id
    if turn.continue_id is not None:
        answer = store.resume_answer(user.user_id, conversation_id, turn.continue_id, run_id)
        history = store.branch_history(conversation_id, turn.continue_id)
        history.append(user_message(CONTINUE_PROMPT))
    else:
        answer = store.start_answer(user.user_id, conversation_id, turn.question_id, run_id)
        history = store.branch_history(conversation_id, turn.question_id)
    return answer, history


@dataclass(frozen=True)
class NewQuestion:
    """A question just stored at the end of the branch, as the page appends it."""

    row: dict[str, str]
    parent_id: int | None


@dataclass(frozen=True)
class TurnStart:
    """A turn's answer row, the history to send, and what the tab shows at its start.

    ``shown`` is the conversation's window read from the database; a send leaves it
    ``None`` and gives ``question`` instead, which the tab appends to what it shows.
    """

    transport: str
    run_id: str
    answer: Message
    history: list[dict[str, str]]
    title: str
    shown: TurnStartRows | None
    question: NewQuestion | None = None


def begin_turn(turn: Turn, run_id: str, search: str) -> TurnStart | None:
    """Create (or reopen) the answer and read the turn's start (blocking); ``None`` if the
    question or answer is gone. For edits, Retry, Regenerate and Continue."""
    user, conversation_id = turn.user, turn.conversation_id
    transport = get_transport(user.user_id)
    answer, history = open_answer(turn, run_id)
    if answer is None or answer.id is None:
        return None
    conversation = store.get_conversation(user.user_id, conversation_id)
    title = conversation.title if conversation is not None else ""
    shown = turn_start_rows(user, conversation_id, search, answer.id)
    return TurnStart(transport, run_id, answer, history, title, shown)


@dataclass(frozen=True)
class SendCheck:
    """What a send's checks read: where the question goes and what to send, or why not."""

    # (kind, sentence) when nothing may be sent: "missing", "busy" or a budget's refusal.
    refusal: tuple[str, str] | None = None
    allowance: budgets.Allowance | None = None
    conversation_id: str = ""  # "" for a new conversation
    session_id: str = ""
    transport: str = ""
    # The branch so far with the question last: what the model is sent.
    history: list[dict[str, str]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class SendStart:
    """A sent question's stored turn, or ``None`` fields if its conversation is gone."""

    turn: Turn | None = None
    start: TurnStart | None = None
    created: bool = False


BUSY = "An answer is still being written. Wait for it, or press Stop."
MISSING = "This conversation is no longer available."
NOT_LOADED = "The page was still loading. Press Send again."

# The most one question (or saved draft) may hold. A page's event must fit the websocket's
# 1 MB message limit, or the connection drops and the event with it; 100,000 characters
# stay under it even at 3 bytes each (about 20,000 tokens of English).
MAX_QUESTION_CHARS = 100_000
# The page fills in {length} itself (assets/composer.js), before such a question leaves it.
TOO_LONG = (
    "This question is {length} characters long; one message holds at most "
    f"{MAX_QUESTION_CHARS:,}. Shorten it, or send it in parts."
)


def too_long(length: int) -> str:
    """The notice for a question of ``length`` characters."""
    return TOO_LONG.replace("{length}", f"{length:,}")


def check_send(
    user: SessionUser, conversation_id: str, text: str, *, db: Session | None = None
) -> SendCheck:
    """Read what a new question needs and check it (blocking; stores nothing).

    The conversation (``""``: a new one) must exist and have no live answer, and the
    question with its history must fit the budgets. ``db``: in the caller's transaction.
    """
    with joined(db) as db:
        target = None
        if conversation_id:
            target = store.send_target(user.user_id, conversation_id, db=db)
            if target is None:
                return SendCheck(refusal=("missing", MISSING))
            if target.busy:
                return SendCheck(refusal=("busy", BUSY))
        history = (
            store.branch_history(conversation_id, target.leaf_id, db=db)
            if target is not None and target.leaf_id is not None
            else []
        )
        history.append(user_message(text))
        allowance = user_allowance(user, conversation_id, db=db)
        refusal = allowance.refusal_for(history)
        if refusal is not None:
            return SendCheck(refusal=refusal, allowance=allowance)
        return SendCheck(
            conversation_id=conversation_id,
            session_id=target.session_id if target is not None else str(uuid.uuid4()),
            transport=get_transport(user.user_id, db=db),
            history=history,
        )


def store_send(
    user: SessionUser, check: SendCheck, text: str, run_id: str, *, db: Session | None = None
) -> SendStart:
    """Store a checked question with its ``streaming`` answer, in one transaction (blocking).

    A new conversation gets the session id the check chose (its request may be out already).
    ``db``: in the caller's session, which may commit each statement on its own only where
    :func:`~behest_chat.conversations.store.asks_in_one_statement`.
    """
    asked = store.ask(
        user.user_id, check.conversation_id, text, run_id, session_id=check.session_id, db=db
    )
    if asked is None:  # deleted since the check
        return SendStart()
    start = TurnStart(
        check.transport,
        run_id,
        asked.answer,
        check.history,
        asked.title,
        shown=None,
        question=NewQuestion(
            message_rows([store.view_of(asked.question)])[0], asked.question.parent_id
        ),
    )
    turn = Turn(user, asked.conversation_id, asked.session_id, asked.question.id or 0)
    return SendStart(turn, start, created=not check.conversation_id)


@dataclass(frozen=True)
class PageRead:
    """What a page of the chat shows, read in one trip to a database thread.

    ``conversation`` is ``None`` when the address names none, or one the user cannot open.
    """

    user: SessionUser | None
    conversation: Conversation | None = None
    views: list[MessageView] = field(default_factory=list)
    has_older: bool = False
    conversations: list[dict[str, str]] = field(default_factory=list)
    allowance: str = ""


def read_page(secret: str, conversation_id: str, search: str) -> PageRead:
    """The signed-in user and what their page at ``conversation_id`` shows (blocking).

    Answers whose process went away are marked interrupted first, so the window shows them
    as they now are.
    """
    with reading_scope() as db:
        user = resolve(secret, db=db)
        if user is None:
            return PageRead(None)
        conversation = (
            store.get_conversation(user.user_id, conversation_id, db=db)
            if conversation_id
            else None
        )
        views: list[MessageView] = []
        has_older = False
        if conversation is not None:
            store.interrupt_stale(conversation.id, db=db)
            views, has_older = store.window(user.user_id, conversation.id, db=db)
        return PageRead(
            user,
            conversation,
            views,
            has_older,
            sidebar_rows(store.list_conversations(user.user_id, search, db=db)),
            user_allowance(user, conversation.id if conversation else "", db=db).summary(),
        )


def search_sidebar(secret: str, search: str) -> tuple[SessionUser | None, list[dict[str, str]]]:
    """The signed-in user and their sidebar's rows for ``search`` (blocking)."""
    with reading_scope() as db:
        user = resolve(secret, db=db)
        if user is None:
            return None, []
        return user, sidebar_rows(store.list_conversations(user.user_id, search, db=db))


@dataclass(frozen=True)
class TurnStartRows:
    """What the tab shows when a turn starts, read from the database off the event loop."""

    messages: list[dict[str, str]]
    has_older: bool
    conversations: list[dict[str, str]]


def turn_start_rows(
    user: SessionUser, conversation_id: str, search: str, hide: int
) -> TurnStartRows:
    """The conversation's window without the new answer, and the sidebar (blocking)."""
    with session_scope() as db:
        views, has_older = store.window(user.user_id, conversation_id, db=db)
        conversations = sidebar_rows(store.list_conversations(user.user_id, search, db=db))
    return TurnStartRows(message_rows([v for v in views if v.id != hide]), has_older, conversations)


@dataclass(frozen=True)
class TurnEndRows:
    """What the tab shows once a turn's ending is stored, read off the event loop.

    Either the window and the sidebar as read (``messages``, ``conversations``), or, for a
    send whose question the tab still shows last, only the ended ``answer``'s row, built
    from what was stored: the tab appends it after the row ``after_id`` and keeps its
    sidebar (the conversation went on top when the turn started).
    """

    conversation_id: str
    search: str
    messages: list[dict[str, str]] | None
    has_older: bool
    conversations: list[dict[str, str]] | None
    allowance: str
    answer: dict[str, str] | None = None
    after_id: str = ""


def turn_end_rows(user: SessionUser, conversation_id: str, search: str) -> TurnEndRows:
    """The window with the ended answer, the sidebar and the allowance (blocking)."""
    with session_scope() as db:
        views, has_older = store.window(user.user_id, conversation_id, db=db)
        conversations = sidebar_rows(store.list_conversations(user.user_id, search, db=db))
        allowance = user_allowance(user, conversation_id, db=db).summary()
    return TurnEndRows(
        conversation_id, search, message_rows(views), has_older, conversations, allowance
    )


def ended_answer_row(ending: Ending) -> dict[str, str]:
    """The page's row of a send's new answer (one version) as :func:`store_ending` stored
    it, without reading it back."""
    outcome = ending.outcome
    view = MessageView(
        id=ending.answer_id,
        parent_id=None,
        role="assistant",
        content=ending.text,
        status=outcome.status,
        error_kind=outcome.kind,
        error=_ending_text(outcome)[: store.ERROR_CHARS],
        trace_id=outcome.trace_id[: store.TRACE_ID_CHARS],
        prompt_tokens=ending.prompt_tokens,
        completion_tokens=ending.completion_tokens,
        usage_estimated=ending.estimated,
        run_id="",
        heartbeat_at=None,
        version=1,
        versions=1,
    )
    return message_rows([view])[0]


def sidebar_rows(conversations: Sequence[store.ConversationSummary]) -> list[dict[str, str]]:
    """The sidebar's rows for the page."""
    return [{"id": c.id, "title": c.title} for c in conversations]


def user_allowance(
    user: SessionUser, conversation_id: str, *, db: Session | None = None
) -> budgets.Allowance:
    """The user's allowance with the settings' budgets (blocking)."""
    settings = get_settings()
    return budgets.allowance_for(
        user.user_id,
        user.tier,
        conversation_id or None,
        daily_budget=settings.daily_token_budget(user.tier),
        conversation_cap=settings.conversation_token_cap,
        db=db,
    )


def answer_is_live(user: SessionUser, conversation_id: str) -> bool:
    """Whether the conversation's answer is being written by anyone (blocking)."""
    return is_live(store.streaming_answer(user.user_id, conversation_id))


@dataclass(frozen=True)
class Ending:
    """How a turn's answer ends: the text that arrived, the outcome and the tokens."""

    turn: Turn
    answer_id: int
    run_id: str
    outcome: Outcome
    text: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool  # the tokens are the app's estimate, not the gateway's usage chunk


def store_ending(ending: Ending, *, count_unowned: bool = True) -> bool | None:
    """Close the answer with its outcome and add its tokens to the ledger.

    ``count_unowned``: count the tokens even if another ending came first (a relayed
    request went out whatever happened to the row; a browser's report is only trusted for
    the turn the server still holds open).

    Returns:
        ``True`` when stored; ``False`` when another ending came first (nothing was stored
        or counted); ``None`` when the database failed (the tokens are still counted if it
        allows; the answer shows as interrupted once its heartbeat is stale).
    """
    stored, _ = _store_ending(ending, count_unowned=count_unowned, read_allowance=False)
    return stored


def store_send_ending(ending: Ending, after_id: str) -> TurnEndRows | None:
    """:func:`store_ending` for a send's new answer, which the tab appends after the
    question ``after_id``: its row as stored, and the allowance read in the same
    transaction (blocking). ``None`` unless this run stored the ending."""
    stored, allowance = _store_ending(ending, count_unowned=True, read_allowance=True)
    if stored is not True or allowance is None:
        return None
    return TurnEndRows(
        ending.turn.conversation_id,
        "",
        None,
        False,
        None,
        allowance.summary(),
        ended_answer_row(ending),
        after_id,
    )


def _store_ending(
    ending: Ending, *, count_unowned: bool, read_allowance: bool
) -> tuple[bool | None, budgets.Allowance | None]:
    """:func:`store_ending`, and with ``read_allowance`` the user's allowance after it, read
    on the same connection once this run stored the ending."""
    turn, outcome = ending.turn, ending.outcome
    entry = None
    if ending.prompt_tokens or ending.completion_tokens:
        entry = store.ledger_entry(
            user_id=turn.user.user_id,
            conversation_id=turn.conversation_id,
            session_id=turn.session_id,
            message_id=ending.answer_id,
            prompt_tokens=ending.prompt_tokens,
            completion_tokens=ending.completion_tokens,
            estimated=ending.estimated,
        )
    allowance = None
    try:
        # The ending and its ledger entry are stored together (finish_answer); on
        # PostgreSQL they are committed before the allowance is read.
        with reading_scope() as db:
            stored = store.finish_answer(
                ending.answer_id,
                ending.run_id,
                status=outcome.status,
                content=ending.text,
                error_kind=outcome.kind,
                error=_ending_text(outcome),
                trace_id=outcome.trace_id,
                prompt_tokens=ending.prompt_tokens,
                completion_tokens=ending.completion_tokens,
                usage_estimated=ending.estimated,
                ledger=entry,
                count_unowned=count_unowned,
                db=db,
            )
            if stored and read_allowance:
                allowance = _allowance_after_ending(turn, db)
        return stored, allowance
    except Exception:  # the heartbeat stops, so the answer shows as interrupted later
        logger.exception("the end of a chat turn was not stored")
    if entry is not None:  # the request went out: its tokens still count
        try:
            store.record_usage(entry)
        except Exception:
            logger.exception("the usage of a chat turn was not stored")
    return None, None


def _allowance_after_ending(turn: Turn, db: Session) -> budgets.Allowance | None:
    """The allowance, or ``None`` if it cannot be read: the stored ending stands, and its
    tokens must not be counted again."""
    try:
        return user_allowance(turn.user, turn.conversation_id, db=db)
    except Exception:
        logger.exception("the allowance after a chat turn was not read")
        return None


class Outcome:
    """How a turn ended, filled in as it runs."""

    def __init__(self) -> None:
        self.status = "interrupted"
        self.kind = "interrupted"
        self.text = ""
        self.trace_id = ""
        self.sent = False
        self.usage: dict[str, Any] | None = None

    def end(self, status: str, kind: str, text: str = "", trace_id: str | None = None) -> None:
        self.status, self.kind, self.text = status, kind, text
        if trace_id:
            self.trace_id = trace_id


_ENDINGS = {
    "stopped": "Stopped. The part that arrived is kept.",
    "interrupted": "The answer was interrupted. The part that arrived is kept.",
    "timeout": "The answer stopped arriving in time. The part that arrived is kept; retry.",
}
_RETRYABLE = {"stopped", "error", "interrupted"}
# How an ending's sentence speaks of the text kept; said otherwise when none is shown.
_KEPT = "The part that arrived is kept"
_NONE_KEPT = "No text had arrived"
_NOT_CONTINUABLE = {"quota", "rate_limited", "auth", "forbidden", "bad_request"}


def _ending_text(outcome: Outcome) -> str:
    """The sentence an ended answer shows: the failure's own, or its ending's."""
    return outcome.text or _ENDINGS.get(outcome.kind, "")


def message_rows(views: Sequence[MessageView]) -> list[dict[str, str]]:
    """Message rows for the page; every value a string, as ``rx.foreach`` wants them."""
    rows = []
    for v in views:
        tokens = v.prompt_tokens + v.completion_tokens
        failed = v.role == "assistant" and v.status in _RETRYABLE
        # A reply that ended part way is shown without a last line that would render what
        # never arrived (Continue still goes on from the stored text).
        content = live_draft.unfinished_text(v.content) if failed else v.content
        error = v.error if content or not failed else v.error.replace(_KEPT, _NONE_KEPT)
        rows.append(
            {
                "id": str(v.id),
                "role": v.role,
                "content": content,
                "status": v.status,
                "error": error,
                "kind": v.error_kind,
                "trace_id": v.trace_id,
                "tokens": (
                    f"{'≈' if v.usage_estimated else ''}{tokens:,} tokens"
                    if v.role == "assistant" and tokens
                    else ""
                ),
                "version": str(v.version),
                "versions": str(v.versions),
                "retry": "1" if failed and v.error_kind != "quota" else "",
                # Offered on the last row shown only (ChatState.last_row_id).
                "regenerate": "1" if v.role == "assistant" and v.status == "done" else "",
                "continue": (
                    "1" if failed and v.content and v.error_kind not in _NOT_CONTINUABLE else ""
                ),
            }
        )
    return rows


def is_live(answer: Message | None) -> bool:
    return answer is not None and store.is_live(answer)


def user_message(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}
