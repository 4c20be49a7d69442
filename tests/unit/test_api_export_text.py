"""The export's file name and text, without a server (tests/integration/test_api_export.py
serves them)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from behest_chat.api.export import export_markdown, file_name
from behest_chat.conversations.models import Message


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("Plans for Tuesday?", "plans-for-tuesday.md"),
        ("Résumé: été 2026", "résumé-été-2026.md"),
        ("日本語のタイトル", "日本語のタイトル.md"),
        ("??!", "conversation.md"),
        ("", "conversation.md"),
        ("x" * 100, "x" * 60 + ".md"),
    ],
)
def test_the_file_is_named_after_the_title(title: str, name: str) -> None:
    assert file_name(title) == name


def test_an_empty_answer_that_failed_shows_only_its_reason() -> None:
    messages = [
        Message(id=1, conversation_id="c", role="user", content="hello", status="done"),
        Message(
            id=2,
            conversation_id="c",
            role="assistant",
            content="",
            status="error",
            error="The gateway refused the request.",
        ),
    ]
    text = export_markdown("Hi", messages, datetime(2026, 12, 1, 9, 5, tzinfo=UTC))
    assert text == (
        "# Hi\n\nExported from behest-chat on 2026-12-01 09:05 UTC.\n\n"
        "## You\n\nhello\n\n## Assistant\n\n> The gateway refused the request.\n"
    )


def test_an_answer_still_streaming_is_marked_so() -> None:
    messages = [
        Message(id=1, conversation_id="c", role="user", content="hello", status="done"),
        Message(id=2, conversation_id="c", role="assistant", content="Hel", status="streaming"),
    ]
    text = export_markdown("Hi", messages, datetime(2026, 12, 1, 9, 5, tzinfo=UTC))
    assert text.endswith("## Assistant\n\nHel\n\n> Still being written when this file was made.\n")
