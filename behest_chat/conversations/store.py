"""Reading and writing conversations, messages and usage; every read is scoped to its owner.

Functions that take a ``user_id`` return nothing (``None``, ``False``, empty) for a
conversation of another user or one that does not exist, so callers cannot tell the two
apart. Functions used by a running turn (``save_progress``, ``finish_answer``) are guarded
by the turn's ``run_id`` instead: once another process has marked the turn interrupted, a
late write from the old run changes nothing and tells the run to stop.

The visible history is a branch of the message tree (see :mod:`.models`); :func:`window`
pages it from the newest message backwards with one recursive query, so opening a long
conversation reads only the page it shows.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, SQLModel, col, select

from behest_chat.accounts.models import utcnow
from behest_chat.conversations.models import Conversation, Message, TokenUsage
from behest_chat.db import PLAN_EVERY_TIME, joined, session_scope

__all__ = [
    "DEFAULT_PAGE",
    "ERROR_CHARS",
    "STALE_AFTER",
    "TITLE_MAX",
    "TRACE_ID_CHARS",
    "Asked",
    "ConversationSummary",
    "MessageView",
    "SendTarget",
    "add_user_message",
    "ask",
    "branch_history",
    "create_conversation",
    "delete_conversation",
    "finish_answer",
    "get_conversation",
    "interrupt_stale",
    "is_live",
    "ledger_entry",
    "list_conversations",
    "message_for_user",
    "new_conversation_id",
    "record_usage",
    "rename_conversation",
    "request_stop",
    "resume_answer",
    "save_draft",
    "save_progress",
    "save_progress_many",
    "select_version",
    "send_target",
    "start_answer",
    "stop_requested",
    "streaming_answer",
    "title_from",
    "view_of",
    "visible_branch",
    "window",
]

DEFAULT_PAGE = 50
TITLE_MAX = 120
_AUTO_TITLE_CHARS = 60
# A turn whose heartbeat is older than this has lost its process (saves come every second).
STALE_AFTER = timedelta(seconds=5)
_SEARCH_LIMIT = 50
# What an ended answer keeps of its error text and trace id (the columns' lengths).
ERROR_CHARS = 500
TRACE_ID_CHARS = 128
# Answers saved per statement: three parameters each, within every database's limit.
_SAVE_BATCH = 500
_ID_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ConversationSummary:
    """A conversation as the sidebar lists it."""

    id: str
    title: str
    updated_at: datetime


@dataclass(frozen=True)
class MessageView:
    """One message of the visible branch, with its place among its versions.

    Attributes:
        version: 1-based position among the messages with the same parent.
        versions: how many versions there are.
    """

    id: int
    parent_id: int | None
    role: str
    content: str
    status: str
    error_kind: str
    error: str
    trace_id: str
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool
    run_id: str
    heartbeat_at: datetime | None
    version: int
    versions: int


def new_conversation_id() -> str:
    """A fresh, unguessable conversation id (32 hex digits)."""
    return uuid.uuid4().hex


def title_from(text: str) -> str:
    """The automatic title for a conversation: its first question, shortened on a word."""
    flat = " ".join(text.split())
    if len(flat) <= _AUTO_TITLE_CHARS:
        return flat or "New chat"
    cut = flat[:_AUTO_TITLE_CHARS].rsplit(" ", 1)[0] or flat[:_AUTO_TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


def create_conversation(user_id: int, first_question: str = "") -> Conversation:
    """Start a conversation with its own Behest session id; the title comes from the question."""
    conversation = _new_conversation(user_id, first_question, None)
    with session_scope() as db:
        db.add(conversation)
    return conversation


def _new_conversation(user_id: int, first_question: str, session_id: str | None) -> Conversation:
    """A new conversation (not stored yet); ``session_id`` ``None``: a new UUID."""
    now = utcnow()
    return Conversation(
        id=new_conversation_id(),
        user_id=user_id,
        title=title_from(first_question),
        session_id=session_id or str(uuid.uuid4()),
        created_at=now,
        updated_at=now,
    )


def get_conversation(
    user_id: int, conversation_id: str, *, db: Session | None = None
) -> Conversation | None:
    """The conversation if ``user_id`` owns it, else ``None`` (also for malformed ids)."""
    if not isinstance(conversation_id, str) or not _ID_RE.fullmatch(conversation_id):
        return None
    with joined(db) as session:
        return _owned(session, user_id, conversation_id)


def list_conversations(
    user_id: int, query: str = "", limit: int = _SEARCH_LIMIT, *, db: Session | None = None
) -> list[ConversationSummary]:
    """The user's conversations, newest activity first; ``query`` matches titles and text.

    Read at every page load and at the end of every turn: only the three columns the
    sidebar shows, with the statement built once unless there is a search.
    """
    statement = _recent_conversations_query()
    needle = " ".join(query.split())
    if needle:
        conversations = Conversation.__table__  # type: ignore[attr-defined]
        messages = Message.__table__  # type: ignore[attr-defined]
        pattern = "%" + _escape_like(needle) + "%"
        in_text = (
            sa.select(messages.c.id)
            .where(
                messages.c.conversation_id == conversations.c.id,
                messages.c.content.ilike(pattern, escape="\\"),
            )
            .exists()
        )
        statement = statement.where(
            sa.or_(conversations.c.title.ilike(pattern, escape="\\"), in_text)
        )
    with joined(db) as db:
        rows = db.connection().execute(statement, {"user_id": user_id, "limit": limit}).all()
        return [ConversationSummary(id=r.id, title=r.title, updated_at=r.updated_at) for r in rows]


@functools.cache
def _recent_conversations_query() -> Any:
    conversations = Conversation.__table__  # type: ignore[attr-defined]
    return (
        sa.select(conversations.c.id, conversations.c.title, conversations.c.updated_at)
        .where(conversations.c.user_id == sa.bindparam("user_id"))
        .order_by(conversations.c.updated_at.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def rename_conversation(user_id: int, conversation_id: str, title: str) -> str | None:
    """Give a conversation the user's own title; returns the stored title or ``None``.

    Raises:
        ValueError: the title is empty after trimming.
    """
    clean = " ".join(title.split())[:TITLE_MAX]
    if not clean:
        raise ValueError("title: must not be empty")
    with session_scope() as db:
        conversation = _owned(db, user_id, conversation_id)
        if conversation is None:
            return None
        conversation.title = clean
        conversation.title_is_custom = True
        db.add(conversation)
        return clean


def delete_conversation(user_id: int, conversation_id: str) -> bool:
    """Delete a conversation and its messages; its token usage stays in the ledger."""
    with session_scope() as db:
        conversation = _owned(db, user_id, conversation_id)
        if conversation is None:
            return False
        db.exec(sa.delete(Message).where(col(Message.conversation_id) == conversation_id))
        db.delete(conversation)
        return True


def save_draft(user_id: int, conversation_id: str, text: str) -> bool:
    """Keep what the user typed but did not send, for when they come back."""
    with session_scope() as db:
        conversation = _owned(db, user_id, conversation_id)
        if conversation is None:
            return False
        if conversation.draft != text:
            conversation.draft = text
            db.add(conversation)
        return True


def add_user_message(
    user_id: int, conversation_id: str, text: str, parent_id: int | None
) -> Message | None:
    """Store a question under ``parent_id`` (the branch's last message, or an edited one's parent).

    A new version (an edit) is simply a second child of the same parent. The conversation's
    visible branch moves to the new message, and its draft is cleared.
    """
    with session_scope() as db:
        conversation = _owned(db, user_id, conversation_id)
        if conversation is None or not _parent_ok(db, conversation_id, parent_id):
            return None
        now = utcnow()
        message = _question(conversation_id, parent_id, _depth_under(db, parent_id), text, now)
        db.add(message)
        db.flush()
        if not conversation.title_is_custom and conversation.leaf_id is None:
            # The first question names the conversation; later edits of it do not.
            conversation.title = title_from(text)
        conversation.leaf_id = message.id
        conversation.draft = ""
        conversation.updated_at = now
        db.add(conversation)
        return message


@dataclass(frozen=True)
class Asked:
    """A question stored at the end of its conversation's branch, with its answer started."""

    conversation_id: str
    session_id: str
    title: str
    question: Message
    answer: Message


def ask(
    user_id: int,
    conversation_id: str,
    text: str,
    run_id: str,
    *,
    session_id: str | None = None,
    db: Session | None = None,
) -> Asked | None:
    """Store a question after the branch's last message and its ``streaming`` answer.

    What :func:`add_user_message` then :func:`start_answer` do, in four statements (one
    read, two inserts, one update) without the ORM's unit of work: every send runs it. On
    PostgreSQL, in an existing conversation, it is one statement (:func:`_ask_at_once`).
    ``conversation_id`` ``""`` starts a new conversation (with ``session_id``, if given).

    Returns:
        The stored turn, or ``None`` if the conversation is not the user's (or gone).
    """
    conversations = Conversation.__table__  # type: ignore[attr-defined]
    messages = Message.__table__  # type: ignore[attr-defined]
    now = utcnow()
    with joined(db) as db:
        connection = db.connection()
        if asks_in_one_statement(db, conversation_id):
            return _ask_at_once(connection, user_id, conversation_id, text, run_id, now)
        if conversation_id:
            found = connection.execute(
                _branch_end_query(), {"conversation_id": conversation_id, "user_id": user_id}
            ).first()
            if found is None:
                return None
            leaf_id, title, title_is_custom, session_id, leaf_depth = found
            if leaf_id is not None and leaf_depth is None:
                return None  # the branch's end is not in this conversation
            if leaf_id is None and not title_is_custom:
                title = title_from(text)  # the first question names the conversation
        else:
            conversation = _new_conversation(user_id, text, session_id)
            _insert(connection, conversations, conversation)
            conversation_id, title = conversation.id, conversation.title
            session_id = conversation.session_id
            leaf_id = leaf_depth = None
        depth = 0 if leaf_depth is None else leaf_depth + 1
        question = _question(conversation_id, leaf_id, depth, text, now)
        question.id = int(_insert(connection, messages, question))
        answer = _answer(conversation_id, question.id, depth + 1, run_id, now)
        answer.id = int(_insert(connection, messages, answer))
        connection.execute(
            _asked_update(),
            {"conversation_id": conversation_id, "leaf": answer.id, "new_title": title, "now": now},
        )
    return Asked(conversation_id, session_id, title, question, answer)


def asks_in_one_statement(db: Session, conversation_id: str) -> bool:
    """Whether :func:`ask` stores this question with one statement, atomic on its own (so
    ``db`` may commit each statement by itself, as :func:`~behest_chat.db.reading_scope`
    does): on PostgreSQL, in an existing conversation."""
    return bool(conversation_id) and db.get_bind().dialect.name == "postgresql"


def _ask_at_once(
    connection: sa.Connection,
    user_id: int,
    conversation_id: str,
    text: str,
    run_id: str,
    now: datetime,
) -> Asked | None:
    """:func:`ask` in an existing conversation as one PostgreSQL statement: one round trip
    instead of six (``BEGIN``, the branch's end, two inserts, the update, ``COMMIT``)."""
    question = _question(conversation_id, None, 0, text, now)
    answer = _answer(conversation_id, 0, 0, run_id, now)
    values = {"conversation_id": conversation_id, "user_id": user_id, "now": now}
    values["new_title"] = title_from(text)
    for name in _ASKED_COLUMNS:
        values[f"q_{name}"] = getattr(question, name)
        values[f"a_{name}"] = getattr(answer, name)
    found = connection.execute(_ask_at_once_statement(), values).first()
    if found is None:
        return None  # not the user's conversation, or its branch's end is not in it
    question_id, depth, answer_id, title, session_id, leaf_id = found
    question.id, question.parent_id, question.depth = question_id, leaf_id, depth
    answer.id, answer.parent_id, answer.depth = answer_id, question_id, depth + 1
    return Asked(conversation_id, session_id, title, question, answer)


# Every column of a new message but those the statement works out.
_ASKED_COLUMNS = tuple(
    column.name
    for column in Message.__table__.columns  # type: ignore[attr-defined]
    if column.name not in ("id", "conversation_id", "parent_id", "depth")
)


@functools.cache
def _ask_at_once_statement() -> Any:
    """The question after the branch's end, its answer, and the conversation's new end and
    title, in one statement (PostgreSQL's data-modifying ``WITH``). No row: nothing stored."""
    from sqlalchemy.dialects import postgresql

    messages = Message.__table__  # type: ignore[attr-defined]
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]

    def typed(prefix: str) -> str:
        return ", ".join(
            f"CAST(:{prefix}_{name} AS {messages.c[name].type.compile(dialect=dialect)})"
            for name in _ASKED_COLUMNS
        )

    columns = ", ".join(_ASKED_COLUMNS)
    return sa.text(f"""
        WITH target AS (
            SELECT conversation.id, conversation.leaf_id, conversation.title,
                   conversation.title_is_custom, conversation.session_id, leaf.depth
            FROM conversation
            LEFT JOIN message AS leaf
                ON leaf.id = conversation.leaf_id AND leaf.conversation_id = conversation.id
            WHERE conversation.id = :conversation_id AND conversation.user_id = :user_id
                AND (conversation.leaf_id IS NULL OR leaf.id IS NOT NULL)
        ), question AS (
            INSERT INTO message (conversation_id, parent_id, depth, {columns})
            SELECT target.id, target.leaf_id, coalesce(target.depth + 1, 0), {typed("q")}
            FROM target
            RETURNING id, depth
        ), answer AS (
            INSERT INTO message (conversation_id, parent_id, depth, {columns})
            SELECT target.id, question.id, question.depth + 1, {typed("a")}
            FROM target, question
            RETURNING id
        ), updated AS (
            UPDATE conversation
            SET leaf_id = answer.id, draft = '', updated_at = :now,
                title = CASE WHEN target.leaf_id IS NULL AND NOT target.title_is_custom
                             THEN CAST(:new_title AS VARCHAR) ELSE target.title END
            FROM target, answer
            WHERE conversation.id = target.id
            RETURNING conversation.title
        )
        SELECT question.id, question.depth, answer.id, updated.title, target.session_id,
               target.leaf_id
        FROM target, question, answer, updated
    """)


def start_answer(
    user_id: int, conversation_id: str, question_id: int, run_id: str
) -> Message | None:
    """Create the assistant message that a turn is about to stream (status ``streaming``)."""
    with session_scope() as db:
        conversation = _owned(db, user_id, conversation_id)
        question = _message_in(db, conversation_id, question_id, role="user")
        if conversation is None or question is None:
            return None
        now = utcnow()
        answer = _answer(conversation_id, question_id, question.depth + 1, run_id, now)
        db.add(answer)
        db.flush()
        conversation.leaf_id = answer.id
        conversation.updated_at = now
        db.add(conversation)
        return answer


def resume_answer(
    user_id: int, conversation_id: str, answer_id: int, run_id: str
) -> Message | None:
    """Reopen an ended answer for Continue: ``streaming`` again, under ``run_id``."""
    with session_scope() as db:
        conversation = _owned(db, user_id, conversation_id)
        answer = _message_in(db, conversation_id, answer_id, role="assistant")
        if conversation is None or answer is None or answer.status == "streaming":
            return None
        now = utcnow()
        answer.status, answer.run_id, answer.heartbeat_at = "streaming", run_id, now
        answer.error_kind = answer.error = ""
        answer.stop_requested = False
        answer.updated_at = now
        db.add(answer)
        conversation.leaf_id = _subtree_leaf(db, answer.id)  # type: ignore[arg-type]
        conversation.updated_at = now
        db.add(conversation)
        return answer


def save_progress(message_id: int, run_id: str, content: str) -> bool:
    """Store the text so far and refresh the heartbeat; ``False`` if this run lost the turn."""
    return message_id in save_progress_many([(message_id, run_id, content)])


def save_progress_many(answers: Sequence[tuple[int, str, str]]) -> set[int]:
    """:func:`save_progress` for several answers, ``(message id, run id, text)`` each, in one
    statement; returns the ids saved (a missing id: that run lost its turn)."""
    saved: set[int] = set()
    now = utcnow()
    with session_scope() as db:
        for start in range(0, len(answers), _SAVE_BATCH):
            given = (
                sa.values(
                    sa.column("id", sa.Integer),
                    sa.column("run_id", sa.String),
                    sa.column("content", sa.Text),
                    name="given",
                )
                .data(list(answers[start : start + _SAVE_BATCH]))
                .cte("given")
            )
            statement = (
                sa.update(Message)
                .where(
                    col(Message.id) == given.c.id,
                    col(Message.run_id) == given.c.run_id,
                    col(Message.status) == "streaming",
                )
                .values(content=given.c.content, heartbeat_at=now, updated_at=now)
                .returning(col(Message.id))
            )
            saved.update(db.connection().execute(statement).scalars().all())
    return saved


def finish_answer(
    message_id: int,
    run_id: str,
    *,
    status: str,
    content: str,
    error_kind: str = "",
    error: str = "",
    trace_id: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    usage_estimated: bool = False,
    ledger: TokenUsage | None = None,
    count_unowned: bool = False,
    db: Session | None = None,
) -> bool:
    """Close a streaming answer with its outcome; ``False`` if this run no longer owns it.

    ``ledger``: the request's entry for the token ledger, added with the ending, or with
    ``count_unowned`` whatever happened to the answer (the request went out either way).

    On PostgreSQL one statement, atomic on its own, so ``db`` may commit each statement by
    itself (:func:`~behest_chat.db.reading_scope`); elsewhere up to three statements
    without the ORM's unit of work, in ``db``'s transaction (every turn ends here).
    """
    end_answer, touch_conversation = _ending_updates()
    now = utcnow()
    with joined(db) as db:
        connection = db.connection()
        values = {
            "message_id": message_id,
            "answer_run_id": run_id,
            "new_status": status,
            "new_content": content,
            "new_error_kind": error_kind,
            "new_error": error[:ERROR_CHARS],
            "new_trace_id": trace_id[:TRACE_ID_CHARS],
            "more_prompt_tokens": prompt_tokens,
            "more_completion_tokens": completion_tokens,
            "estimated": usage_estimated,
            "now": now,
        }
        if db.get_bind().dialect.name == "postgresql":
            return _end_at_once(connection, values, ledger, count_unowned)
        stored = bool(connection.execute(end_answer, values).rowcount)
        if stored:
            connection.execute(touch_conversation, {"message_id": message_id, "now": now})
        if ledger is not None and (stored or count_unowned):
            _insert(connection, TokenUsage.__table__, ledger)  # type: ignore[attr-defined]
        return stored


def _end_at_once(
    connection: sa.Connection,
    values: dict[str, Any],
    ledger: TokenUsage | None,
    count_unowned: bool,
) -> bool:
    """:func:`finish_answer` as one PostgreSQL statement: one round trip instead of up to
    six (``BEGIN``, the ending, the conversation's time, the ledger entry, ``COMMIT``)."""
    if ledger is not None:
        values = {**values, "count_unowned": count_unowned}
        values.update({f"u_{k}": v for k, v in ledger.model_dump(exclude={"id"}).items()})
    stored = connection.execute(_end_at_once_statement(ledger is not None), values).scalar()
    return bool(stored)


@functools.cache
def _end_at_once_statement(counting: bool) -> Any:
    """The ending, the conversation's time and (``counting``) the ledger entry, in one
    statement (PostgreSQL's data-modifying ``WITH``). Its one value: whether the ending was
    stored."""
    conversations = Conversation.__table__  # type: ignore[attr-defined]
    messages = Message.__table__  # type: ignore[attr-defined]
    usage = TokenUsage.__table__  # type: ignore[attr-defined]
    end_answer, _ = _ending_updates()
    ended = end_answer.returning(messages.c.conversation_id).cte("ended")
    touched = (
        conversations.update()
        .where(conversations.c.id.in_(sa.select(ended.c.conversation_id)))
        .values(updated_at=sa.bindparam("now"))
        .returning(conversations.c.id)
        .cte("touched")
    )
    statement = sa.select(sa.exists(sa.select(ended.c.conversation_id))).add_cte(touched)
    if not counting:
        return statement
    columns = [column for column in usage.columns if column.name != "id"]
    entry = sa.select(
        *(sa.bindparam(f"u_{column.name}", type_=column.type) for column in columns)
    ).where(
        sa.or_(
            sa.bindparam("count_unowned", type_=sa.Boolean),
            sa.exists(sa.select(ended.c.conversation_id)),
        )
    )
    counted = (
        usage.insert()
        .from_select([column.name for column in columns], entry)
        .returning(usage.c.id)
        .cte("counted")
    )
    return statement.add_cte(counted)


def request_stop(user_id: int, conversation_id: str) -> int | None:
    """Mark the conversation's streaming answer as stopped by the user; returns its id."""
    with session_scope() as db:
        if _owned(db, user_id, conversation_id) is None:
            return None
        answer = _streaming(db, conversation_id)
        if answer is None:
            return None
        answer.stop_requested = True
        db.add(answer)
        return answer.id


def stop_requested(message_id: int) -> bool:
    """Whether the user asked to stop this answer (read when its task is cancelled)."""
    with session_scope() as db:
        answer = db.get(Message, message_id)
        return bool(answer and answer.stop_requested)


@dataclass(frozen=True)
class SendTarget:
    """A conversation as a new question sees it.

    Attributes:
        leaf_id: the branch's last message (``None``: the conversation is empty).
        session_id: the conversation's Behest session.
        busy: an answer is still being written (its newest ``streaming`` answer is live).
    """

    leaf_id: int | None
    session_id: str
    busy: bool


def send_target(
    user_id: int, conversation_id: str, *, db: Session | None = None
) -> SendTarget | None:
    """The user's conversation as a new question sees it (one query; read on every send),
    or ``None`` if it is not theirs or gone."""
    if not isinstance(conversation_id, str) or not _ID_RE.fullmatch(conversation_id):
        return None
    with joined(db) as db:
        row = (
            db.connection()
            .execute(_send_target_query(), {"conversation_id": conversation_id, "user_id": user_id})
            .first()
        )
    if row is None:
        return None
    return SendTarget(row.leaf_id, row.session_id, busy=_beating(row.heartbeat_at))


def streaming_answer(
    user_id: int, conversation_id: str, *, db: Session | None = None
) -> Message | None:
    """The conversation's answer still marked ``streaming`` (live or not), if any."""
    with joined(db) as db:
        if _owned(db, user_id, conversation_id) is None:
            return None
        return _streaming(db, conversation_id)


def message_for_user(user_id: int, message_id: int) -> Message | None:
    """A message, if it belongs to one of the user's conversations."""
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        return None
    with session_scope() as db:
        message = db.get(Message, message_id)
        if message is None or _owned(db, user_id, message.conversation_id) is None:
            return None
        return message


def view_of(message: Message, version: int = 1, versions: int = 1) -> MessageView:
    """A stored message as pages show it (a new message on a branch: version 1 of 1)."""
    assert message.id is not None, "the message must be saved first"
    return MessageView(
        id=message.id,
        parent_id=message.parent_id,
        role=message.role,
        content=message.content,
        status=message.status,
        error_kind=message.error_kind,
        error=message.error,
        trace_id=message.trace_id,
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        usage_estimated=message.usage_estimated,
        run_id=message.run_id,
        heartbeat_at=message.heartbeat_at,
        version=version,
        versions=versions,
    )


def is_live(message: Message | MessageView, now: datetime | None = None) -> bool:
    """Whether a streaming answer's process is still writing it (fresh heartbeat)."""
    return message.status == "streaming" and _beating(message.heartbeat_at, now)


def _beating(heartbeat_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a streaming answer's heartbeat is recent enough that its process is alive."""
    return heartbeat_at is not None and (now or utcnow()) - _aware(heartbeat_at) < STALE_AFTER


def interrupt_stale(
    conversation_id: str, now: datetime | None = None, *, db: Session | None = None
) -> list[int]:
    """Mark streaming answers whose process went away as ``interrupted``; return their ids.

    ``db``: in the caller's session (the changes are flushed here).
    """
    current = now or utcnow()
    with joined(db) as db:
        stale = db.exec(
            select(Message).where(
                Message.conversation_id == conversation_id,
                Message.status == "streaming",
                sa.or_(
                    col(Message.heartbeat_at).is_(None),
                    col(Message.heartbeat_at) < current - STALE_AFTER,
                ),
            )
        ).all()
        for answer in stale:
            answer.status = "interrupted"
            answer.error_kind = "interrupted"
            answer.error = "The server stopped while answering. The part that arrived is kept."
            answer.heartbeat_at = None
            answer.updated_at = current
            db.add(answer)
        if stale:
            db.flush()
        return [answer.id for answer in stale if answer.id is not None]


def window(
    user_id: int,
    conversation_id: str,
    *,
    before_id: int | None = None,
    limit: int = DEFAULT_PAGE,
    db: Session | None = None,
) -> tuple[list[MessageView], bool]:
    """A page of the visible branch, oldest first, and whether older messages exist.

    Args:
        user_id: the owner; another user's conversation gives an empty page.
        conversation_id: the conversation.
        before_id: page the messages above this one (its ancestors); ``None`` starts
            at the newest message of the branch.
        limit: how many messages at most.
        db: read in the caller's transaction.
    """
    with joined(db) as db:
        conversation = _owned(db, user_id, conversation_id)
        if conversation is None:
            return [], False
        if before_id is None:
            start = conversation.leaf_id
        else:
            anchor = _message_in(db, conversation_id, before_id)
            if anchor is None:
                return [], False
            start = anchor.parent_id
        if start is None:
            return [], False
        rows = _ancestors(db, start, limit)
        if not rows:
            return [], False
        has_older = rows[0].parent_id is not None
        return _with_versions(db, conversation_id, rows), has_older


def visible_branch(
    user_id: int, conversation_id: str
) -> tuple[Conversation, list[Message]] | None:
    """The conversation and every message of the branch it shows, oldest first (``None``
    for another user's conversation or one that does not exist)."""
    with session_scope() as db:
        conversation = get_conversation(user_id, conversation_id, db=db)
        if conversation is None:
            return None
        leaf = conversation.leaf_id
        rows = _ancestors(db, leaf, None) if leaf is not None else []
        return conversation, [m for m in rows if m.conversation_id == conversation_id]


def branch_history(
    conversation_id: str, up_to_id: int, *, db: Session | None = None
) -> list[dict[str, str]]:
    """The whole branch ending at ``up_to_id`` as chat messages for the model.

    Empty answers (a refused request) are left out; partial ones are kept, since the
    user saw them.
    """
    with joined(db) as db:
        # Plain rows, not Message objects, fetched at once: a long branch is read on every
        # send.
        rows = db.connection().execute(_history_query(), {"start_id": up_to_id}).all()
    return [
        {"role": role, "content": content}
        for role, content, owner in rows
        if owner == conversation_id and (role == "user" or content)
    ]


def select_version(user_id: int, message_id: int, step: int) -> bool:
    """Show the previous (``step=-1``) or next (``+1``) version of a message.

    The branch on screen then continues with the newest message under that version.
    """
    with session_scope() as db:
        message = db.get(Message, message_id)
        if message is None:
            return False
        conversation = _owned(db, user_id, message.conversation_id)
        if conversation is None:
            return False
        siblings = _sibling_ids(db, message.conversation_id, message.parent_id)
        index = siblings.index(message_id) + step
        if not 0 <= index < len(siblings):
            return False
        conversation.leaf_id = _subtree_leaf(db, siblings[index])
        db.add(conversation)
        return True


def record_usage(entry: TokenUsage, *, db: Session | None = None) -> None:
    """Add one request's tokens (:func:`ledger_entry`) to the ledger; with ``db``, in the
    caller's transaction."""
    with joined(db) as db:
        _insert(db.connection(), TokenUsage.__table__, entry)  # type: ignore[attr-defined]


def ledger_entry(
    *,
    user_id: int,
    conversation_id: str | None,
    session_id: str,
    message_id: int | None,
    prompt_tokens: int,
    completion_tokens: int,
    estimated: bool,
    when: datetime | None = None,
) -> TokenUsage:
    """One request's tokens as a ledger row (UTC day of ``when``, default now), unsaved."""
    moment = when or utcnow()
    return TokenUsage(
        user_id=user_id,
        conversation_id=conversation_id,
        session_id=session_id,
        message_id=message_id,
        day=_utc_day(moment),
        prompt_tokens=max(0, prompt_tokens),
        completion_tokens=max(0, completion_tokens),
        estimated=estimated,
        created_at=moment,
    )


def _question(
    conversation_id: str, parent_id: int | None, depth: int, text: str, now: datetime
) -> Message:
    return Message(
        conversation_id=conversation_id,
        parent_id=parent_id,
        depth=depth,
        role="user",
        content=text,
        created_at=now,
        updated_at=now,
    )


def _answer(
    conversation_id: str, question_id: int, depth: int, run_id: str, now: datetime
) -> Message:
    """An answer about to stream under ``run_id``."""
    return Message(
        conversation_id=conversation_id,
        parent_id=question_id,
        depth=depth,
        role="assistant",
        status="streaming",
        run_id=run_id,
        heartbeat_at=now,
        created_at=now,
        updated_at=now,
    )


def _insert(connection: sa.Connection, table: sa.Table, row: SQLModel) -> Any:
    """Insert ``row`` (its model's defaults filled in) and return its primary key."""
    values = row.model_dump(exclude_none=True)
    return connection.execute(_insert_into(table), values).inserted_primary_key[0]


# The statements every turn runs are built once, their values passed as parameters:
# building one costs more CPU than the database spends running it.


@functools.cache
def _insert_into(table: sa.Table) -> Any:
    return table.insert()


@functools.cache
def _asked_update() -> Any:
    """A conversation's new branch end, title and cleared draft, after a question."""
    conversations = Conversation.__table__  # type: ignore[attr-defined]
    return (
        conversations.update()
        .where(conversations.c.id == sa.bindparam("conversation_id"))
        .values(
            leaf_id=sa.bindparam("leaf"),
            title=sa.bindparam("new_title"),
            draft="",
            updated_at=sa.bindparam("now"),
        )
    )


@functools.cache
def _ending_updates() -> tuple[Any, Any]:
    """An answer's ending (only from the run streaming it), and its conversation's time."""
    messages = Message.__table__  # type: ignore[attr-defined]
    conversations = Conversation.__table__  # type: ignore[attr-defined]
    end_answer = (
        messages.update()
        .where(
            messages.c.id == sa.bindparam("message_id"),
            messages.c.run_id == sa.bindparam("answer_run_id"),
            messages.c.status == "streaming",
        )
        .values(
            status=sa.bindparam("new_status"),
            content=sa.bindparam("new_content"),
            error_kind=sa.bindparam("new_error_kind"),
            error=sa.bindparam("new_error"),
            trace_id=sa.bindparam("new_trace_id"),
            # Continue adds to an answer: its earlier requests' tokens stay counted.
            prompt_tokens=messages.c.prompt_tokens + sa.bindparam("more_prompt_tokens"),
            completion_tokens=(
                messages.c.completion_tokens + sa.bindparam("more_completion_tokens")
            ),
            # Once estimated, an answer's count stays marked so.
            usage_estimated=sa.or_(
                messages.c.usage_estimated, sa.bindparam("estimated", type_=sa.Boolean)
            ),
            heartbeat_at=None,
            updated_at=sa.bindparam("now"),
        )
    )
    owner = sa.select(messages.c.conversation_id).where(
        messages.c.id == sa.bindparam("message_id")
    )
    touch_conversation = (
        conversations.update()
        .where(conversations.c.id == owner.scalar_subquery())
        .values(updated_at=sa.bindparam("now"))
    )
    return end_answer, touch_conversation


@functools.cache
def _branch_end_query() -> Any:
    """A user's conversation with the id and depth of its branch's last message."""
    conversations = Conversation.__table__  # type: ignore[attr-defined]
    messages = Message.__table__  # type: ignore[attr-defined]
    leaf = sa.and_(
        messages.c.id == conversations.c.leaf_id,
        messages.c.conversation_id == conversations.c.id,
    )
    return (
        sa.select(
            conversations.c.leaf_id,
            conversations.c.title,
            conversations.c.title_is_custom,
            conversations.c.session_id,
            messages.c.depth,
        )
        .select_from(conversations.outerjoin(messages, leaf))
        .where(
            conversations.c.id == sa.bindparam("conversation_id"),
            conversations.c.user_id == sa.bindparam("user_id"),
        )
    )


def _utc_day(moment: datetime) -> date:
    return _aware(moment).astimezone(UTC).date()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _owned(db: Session, user_id: int, conversation_id: str) -> Conversation | None:
    if not isinstance(conversation_id, str) or not _ID_RE.fullmatch(conversation_id):
        return None
    conversation = db.get(Conversation, conversation_id)
    if conversation is None or conversation.user_id != user_id:
        return None
    return conversation


def _streaming(db: Session, conversation_id: str) -> Message | None:
    return db.exec(  # type: ignore[call-overload]
        _streaming_query(), params={"conversation_id": conversation_id}
    ).first()


@functools.cache
def _send_target_query() -> Any:
    """A user's conversation with the heartbeat of its newest ``streaming`` answer (or NULL),
    what :func:`is_live` reads."""
    conversations = Conversation.__table__  # type: ignore[attr-defined]
    messages = Message.__table__  # type: ignore[attr-defined]
    newest_streaming = (
        sa.select(messages.c.heartbeat_at)
        .where(messages.c.conversation_id == conversations.c.id)
        .where(messages.c.status == "streaming")
        .order_by(messages.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return sa.select(
        conversations.c.leaf_id, conversations.c.session_id, newest_streaming.label("heartbeat_at")
    ).where(
        conversations.c.id == sa.bindparam("conversation_id"),
        conversations.c.user_id == sa.bindparam("user_id"),
    )


@functools.cache
def _streaming_query() -> Any:
    """A conversation's answers marked ``streaming``, newest first."""
    return (
        select(Message)
        .where(Message.conversation_id == sa.bindparam("conversation_id"))
        .where(Message.status == "streaming")
        .order_by(col(Message.id).desc())
    )


def _parent_ok(db: Session, conversation_id: str, parent_id: int | None) -> bool:
    return parent_id is None or _message_in(db, conversation_id, parent_id) is not None


def _message_in(
    db: Session, conversation_id: str, message_id: int, role: str | None = None
) -> Message | None:
    """Message ``message_id`` if it belongs to ``conversation_id`` (and has ``role``)."""
    message = db.get(Message, message_id)
    if message is None or message.conversation_id != conversation_id:
        return None
    if role is not None and message.role != role:
        return None
    return message


def _depth_under(db: Session, parent_id: int | None) -> int:
    if parent_id is None:
        return 0
    parent = db.get(Message, parent_id)
    return 0 if parent is None else parent.depth + 1


def _ancestors(db: Session, start_id: int, limit: int | None) -> list[Message]:
    """``start_id`` and its ancestors (at most ``limit``), oldest first."""
    if limit is None:
        return list(db.exec(_ancestors_query(False), params={"start_id": start_id}))
    params = {"start_id": start_id, "last_n": limit - 1}
    return list(db.exec(_ancestors_query(True), params=params))


@functools.cache
def _ancestors_query(limited: bool) -> Any:
    """The recursive query behind :func:`_ancestors`, built once: building it costs more
    than running it, and every page load and turn start runs it."""
    chain = _ancestor_chain(limited)
    query = select(Message).join(chain, col(Message.id) == chain.c.id)
    return query.order_by(chain.c.n.desc()).execution_options(**{PLAN_EVERY_TIME: True})


def _ancestor_chain(limited: bool) -> Any:
    """``start_id`` and its ancestors (at most ``last_n`` + 1) with their distance ``n``."""
    table = Message.__table__  # type: ignore[attr-defined]
    chain = (
        sa.select(table.c.id, table.c.parent_id, sa.literal(0).label("n"))
        .where(table.c.id == sa.bindparam("start_id"))
        .cte("chain", recursive=True)
    )
    parent = aliased(table)
    step = sa.select(parent.c.id, parent.c.parent_id, (chain.c.n + 1).label("n")).join(
        chain, parent.c.id == chain.c.parent_id
    )
    if limited:
        step = step.where(chain.c.n < sa.bindparam("last_n"))
    return chain.union_all(step)


@functools.cache
def _history_query() -> Any:
    """Role, content and conversation of ``start_id`` and its ancestors, oldest first."""
    table = Message.__table__  # type: ignore[attr-defined]
    chain = _ancestor_chain(False)
    return (
        sa.select(table.c.role, table.c.content, table.c.conversation_id)
        .join(chain, table.c.id == chain.c.id)
        .order_by(chain.c.n.desc())
        .execution_options(**{PLAN_EVERY_TIME: True})
    )


def _sibling_ids(db: Session, conversation_id: str, parent_id: int | None) -> list[int]:
    parent_match = (
        col(Message.parent_id).is_(None) if parent_id is None else Message.parent_id == parent_id
    )
    return list(
        db.exec(
            select(Message.id)
            .where(Message.conversation_id == conversation_id, parent_match)
            .order_by(col(Message.id))
        )
    )  # type: ignore[arg-type]


def _subtree_leaf(db: Session, root_id: int) -> int:
    """The newest message under ``root_id`` (itself included): always a leaf of the tree."""
    newest = db.exec(_subtree_leaf_query(), params={"root_id": root_id}).scalar()  # type: ignore[call-overload]
    return int(newest if newest is not None else root_id)


@functools.cache
def _subtree_leaf_query() -> Any:
    """The recursive query behind :func:`_subtree_leaf`, built once (like the ancestors')."""
    table = Message.__table__  # type: ignore[attr-defined]
    tree = (
        sa.select(table.c.id)
        .where(table.c.id == sa.bindparam("root_id"))
        .cte("tree", recursive=True)
    )
    child = aliased(table)
    tree = tree.union_all(sa.select(child.c.id).join(tree, child.c.parent_id == tree.c.id))
    return sa.select(sa.func.max(tree.c.id)).execution_options(**{PLAN_EVERY_TIME: True})


def _with_versions(db: Session, conversation_id: str, rows: Iterable[Message]) -> list[MessageView]:
    rows = list(rows)
    parents = {m.parent_id for m in rows}
    named = [p for p in parents if p is not None]
    conditions: list[Any] = []
    if named:
        conditions.append(col(Message.parent_id).in_(named))
    if None in parents:
        conditions.append(col(Message.parent_id).is_(None))
    siblings: dict[int | None, list[int]] = {}
    for message_id, parent_id in db.exec(
        select(Message.id, Message.parent_id)
        .where(Message.conversation_id == conversation_id, sa.or_(*conditions))
        .order_by(col(Message.id))
    ):
        siblings.setdefault(parent_id, []).append(message_id)  # type: ignore[arg-type]
    views = []
    for m in rows:
        ids = siblings.get(m.parent_id, [m.id])
        views.append(view_of(m, ids.index(m.id) + 1 if m.id in ids else 1, len(ids)))
    return views


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
