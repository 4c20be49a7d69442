"""The reply in progress travels to the page as pieces, not as a var resent whole.

A Reflex var is sent whole on every change, so a reply pushed as one growing var costs the
square of its length on the websocket. Instead the server sends each new piece with its
offset in the answer (:func:`put`), and ``assets/live_draft.js`` joins the pieces in the
page, where :func:`live_text` reads them for rendering. A page that arrives mid-answer gets
the text so far as one piece at offset 0; pieces that come before the page's modules have
loaded are kept by ``assets/live_queue.js``, a script in the page's head.
"""

from __future__ import annotations

import json
import re

import reflex as rx
from reflex_base.event import Event
from reflex_base.utils.imports import ImportVar
from reflex_base.vars import VarData

_HOOK = VarData(
    imports={"$/public/live_draft.js": [ImportVar(tag="useLiveDrafts")]},
    hooks={"const liveDrafts = useLiveDrafts()": None},
)
_BLOCKS = VarData(imports={"$/public/live_draft.js": [ImportVar(tag="draftBlocks")]})
_FINISHED_BLOCKS = VarData(imports={"$/public/live_draft.js": [ImportVar(tag="markdownBlocks")]})


# A piece costs ~150 bytes of framing on the websocket, so pieces are few and large: one goes
# out once 512 characters wait, or once it has waited four flush intervals (200 ms by
# default), never more often than one interval; the page shows each over a few steps.
PIECE_CHARS = 512
PIECE_MAX_WAIT = 4


def piece_due(waiting_chars: int, waited_s: float, flush_s: float) -> bool:
    """Whether the text waiting should go to the page now (``flush_s == 0``: every piece)."""
    if waited_s < flush_s or waiting_chars <= 0:
        return False
    return flush_s == 0 or waiting_chars >= PIECE_CHARS or waited_s >= PIECE_MAX_WAIT * flush_s


# What a reply cut off part way may end in that is not written yet (draftBlocks in
# assets/live_draft.js hides the same while it streams): a block's marker alone on the last
# line, a table's first row without the row that makes it a table, a code fence begun (an
# opening fence with no code after it), or a numbered list's next number.
_BARE_MARKER = re.compile(r"(^|\n) {0,3}(#{1,6}|[-*+=_]+|\d{1,9}[.)]|>|`{1,2})[ \t]*\Z")
_TABLE_HEAD = re.compile(r"(^|\n[ \t]*\n) {0,3}\|[^\n]*(\n {0,3}[-|: \t]*)?\Z")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)
# After an item of a numbered list, a number alone is the next item's marker begun ("3" of
# "3."); rendered, it would join the item above as its last word.
_NEXT_NUMBER = re.compile(r"((?:^|\n) {0,3}\d{1,9}[.)][ \t][^\n]*\n) {0,3}\d{1,9}[ \t]*\Z")


def unfinished_text(text: str) -> str:
    """The text of a reply that ended part way, as the page shows it: without a last line
    that would render what never arrived (an empty list item or heading, an empty code
    block, a stray backtick, the number of a list's next item). What is stored keeps every
    character."""
    text = _BARE_MARKER.sub(r"\1", text, count=1)
    text = _NEXT_NUMBER.sub(r"\1", text, count=1)
    text = _TABLE_HEAD.sub(r"\1", text, count=1)
    fences = list(_FENCE.finditer(text))
    # An odd number of fence lines: the last opens a block; with nothing after it, drop it.
    if len(fences) % 2 == 1 and "\n" not in text[fences[-1].end() :].rstrip():
        text = text[: fences[-1].start()]
    return text


def put(answer_id: int, at: int, text: str) -> Event:
    """Write ``text`` at offset ``at`` of answer ``answer_id``'s text in the page.

    The event ``rx.call_script`` would make, built directly: through its vars it costs
    about 20 times as much, on every piece of every reply.
    """
    piece = json.dumps(text, ensure_ascii=False)
    script = f"behestLive.put({int(answer_id)},{int(at)},{piece})"
    return Event(name="_call_script", payload={"javascript_code": script, "callback": None})


def live_text(answer_id: rx.Var[int]) -> rx.Var[str]:
    """The text the page holds for ``answer_id`` ("" before its first piece)."""
    return rx.Var(
        f'(liveDrafts[{answer_id!s}] ?? "")',
        _var_data=VarData.merge(_HOOK, answer_id._get_all_var_data()),
    ).to(str)


def live_blocks(answer_id: rx.Var[int]) -> rx.Var[list[str]]:
    """The text the page holds for ``answer_id`` as top-level markdown blocks.

    Rendered one memoised block each, a new piece renders only the last block again rather
    than the whole reply (``markdownBlocks`` in ``assets/live_draft.js``). A block's
    marker alone on the last line ("#", "-", "1.") waits for its words, and a table's
    first row for the row that makes it a table (``draftBlocks``).
    """
    text = live_text(answer_id)
    return rx.Var(
        f"draftBlocks({text!s})", _var_data=VarData.merge(_BLOCKS, text._get_all_var_data())
    ).to(list[str])


def finished_blocks(text: rx.Var[str]) -> rx.Var[list[str]]:
    """A finished message's text as the same top-level blocks :func:`live_blocks` gives.

    The answer that just streamed keeps its rendered blocks when it becomes a finished row:
    only a block whose text changed renders again.
    """
    return rx.Var(
        f"markdownBlocks({text!s})",
        _var_data=VarData.merge(_FINISHED_BLOCKS, text._get_all_var_data()),
    ).to(list[str])
