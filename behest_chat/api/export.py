"""``GET /api/conversations/{id}/export``: a conversation as a Markdown file.

What it holds is the branch the conversation shows (the versions picked with the arrows), oldest
first: each question and answer under a heading, an answer that did not finish with its
reason. The signed-in user's own conversations only: 401 without a session, 404 for one
that does not exist or is someone else's (the two are not told apart).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from behest_chat.accounts.models import utcnow
from behest_chat.api.http import ALL_METHODS, guarded, json_error, signed_in_user
from behest_chat.conversations import store
from behest_chat.conversations.models import Message
from behest_chat.settings import Settings

__all__ = ["EXPORT_PATH", "export_markdown", "export_path", "export_routes", "file_name"]

_SPEAKERS = {"user": "You", "assistant": "Assistant"}


def export_path(conversation_id: object) -> str:
    """A conversation's export address; ``conversation_id`` may be a page's var (the link
    on the chat page) as well as an id."""
    return f"/api/conversations/{conversation_id}/export"


EXPORT_PATH = export_path("{conversation_id}")  # the route's pattern


def export_routes(settings: Settings) -> list[Route]:
    """The route of this module, for ``create_api``."""

    async def export(request: Request) -> Response:
        user = await signed_in_user(request)
        found = await run_in_threadpool(
            store.visible_branch, user.user_id, request.path_params["conversation_id"]
        )
        if found is None:
            return json_error(404, "no such conversation", with_ok=False)
        conversation, messages = found
        name = file_name(conversation.title)
        return Response(
            export_markdown(conversation.title, messages, utcnow()),
            media_type="text/markdown; charset=utf-8",
            headers={
                # The plain name for old clients, the UTF-8 one (RFC 6266) for the rest.
                "Content-Disposition": (
                    f"attachment; filename=\"{name.encode('ascii', 'replace').decode()}\"; "
                    f"filename*=UTF-8''{quote(name)}"
                )
            },
        )

    endpoint = guarded(export, methods=["GET"], app_origins=settings.app_origins, with_ok=False)
    return [Route(EXPORT_PATH, endpoint, methods=ALL_METHODS)]


def export_markdown(title: str, messages: Sequence[Message], now: datetime) -> str:
    """The file's text: the title, when it was exported, then every message as the page
    shows it (an answer that ended part way with its reason, and without a marker begun)."""
    # Imported here: the state package imports this API (the settings page names its routes).
    from behest_chat.state.turn_store import message_rows

    parts = [
        f"# {title or 'Conversation'}",
        f"Exported from behest-chat on {now:%Y-%m-%d %H:%M} UTC.",
    ]
    for row in message_rows([store.view_of(message) for message in messages]):
        parts.append(f"## {_SPEAKERS.get(row['role'], row['role'])}")
        if row["content"].strip():
            parts.append(row["content"].strip("\n"))
        if row["status"] == "streaming":
            parts.append("> Still being written when this file was made.")
        elif row["status"] != "done" and row["error"]:
            parts.append(f"> {row['error']}")
    return "\n\n".join(parts) + "\n"


def file_name(title: str) -> str:
    """``"Plans for Tuesday?"`` → ``"plans-for-tuesday.md"``; letters of any script stay."""
    words = re.findall(r"\w+", title.lower())
    stem = "-".join(words)[:60].strip("-") or "conversation"
    return f"{stem}.md"
