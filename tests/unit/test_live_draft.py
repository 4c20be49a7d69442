"""When a piece of the reply in progress goes to the page, how it is written, and how a
reply that ended part way is shown."""

from __future__ import annotations

import json

import pytest
import reflex as rx
from reflex_base.event import Event

from behest_chat.live_draft import PIECE_CHARS, PIECE_MAX_WAIT, piece_due, put, unfinished_text


def test_the_first_piece_goes_at_once() -> None:
    assert piece_due(1, waited_s=1e9, flush_s=0.05)


def test_never_more_often_than_the_flush_interval() -> None:
    assert not piece_due(PIECE_CHARS * 10, waited_s=0.049, flush_s=0.05)


def test_a_small_piece_waits_until_it_is_large_or_has_waited_long() -> None:
    assert not piece_due(PIECE_CHARS - 1, waited_s=0.06, flush_s=0.05)
    assert piece_due(PIECE_CHARS, waited_s=0.06, flush_s=0.05)
    assert piece_due(1, waited_s=PIECE_MAX_WAIT * 0.05, flush_s=0.05)


def test_nothing_waiting_sends_nothing() -> None:
    assert not piece_due(0, waited_s=10, flush_s=0.05)


def test_a_zero_interval_sends_every_piece() -> None:
    assert piece_due(1, waited_s=0, flush_s=0)


def test_the_piece_is_a_javascript_string_literal_whatever_the_model_wrote() -> None:
    text = 'a "quote", a \\ backslash, </script><img src=x onerror=alert(1)>\n\u2028'
    code = put(7, 12, text).payload["javascript_code"]
    prefix = "behestLive.put(7,12,"
    assert code.startswith(prefix) and code.endswith(")")
    assert json.loads(code[len(prefix) : -1]) == text


def test_a_piece_is_the_event_rx_call_script_makes() -> None:
    event = put(3, 0, "hello")
    assert Event.from_event_type(rx.call_script(event.payload["javascript_code"])) == [event]


# A reply cut off there, and what the page shows of it (the live draft holds back the same:
# tests/e2e/test_chat_flow.py checks assets/live_draft.js against these).
CUT_OFF_PART_WAY = [
    ("Steps:\n\n1. one\n2. two\n3.", "Steps:\n\n1. one\n2. two\n"),
    ("Steps:\n\n1. one\n2. two\n3", "Steps:\n\n1. one\n2. two\n"),
    ("1) one\n12", "1) one\n"),
    ("Points:\n- a\n- ", "Points:\n- a\n"),
    ("Intro\n\n##", "Intro\n\n"),
    ("Quote:\n>", "Quote:\n"),
    ("Code:\n`", "Code:\n"),
    ("Code:\n``", "Code:\n"),
    ("Code:\n```python", "Code:\n"),
    ("Code:\n```python\n", "Code:\n"),
    ("Table:\n\n| a | b |\n|--", "Table:\n\n"),
]
CUT_OFF_AFTER_WORDS = [
    "Use `x` here",
    "Code:\n```python\nprint(1)",
    "Code:\n```\nx\n```",
    "A sentence that stops mid",
    "1. one\n2. two",
    "The answer is:\n42",
    "Items:\n- one\n3",
    "| a | b |\n|---|---|\n| 1 | 2 |",
]


@pytest.mark.parametrize(("text", "shown"), CUT_OFF_PART_WAY)
def test_a_reply_cut_off_part_way_is_shown_without_what_never_arrived(
    text: str, shown: str
) -> None:
    assert unfinished_text(text) == shown


@pytest.mark.parametrize("text", CUT_OFF_AFTER_WORDS)
def test_a_reply_cut_off_after_written_words_is_shown_whole(text: str) -> None:
    assert unfinished_text(text) == text
