"""The built-in offline model: deterministic markdown answers, no network, no weights.

Directives, read from the last user message (leading whitespace ignored):

- ``echo: <text>``: the answer is exactly ``<text>`` (one optional space after the colon
  is dropped). Tests use it to send chosen content, e.g. raw HTML or long code.
- ``long: <N>``: the answer is exactly N tokens (1 ≤ N ≤ 1,000,000) of markdown prose,
  lists and code, produced lazily; benchmarks use it.
- anything else: a markdown answer derived only from the prompt's words: a heading, a
  sentence, a bulleted list and a fenced python block, 60-120 tokens. The same prompt always
  gives the same answer.

Tokens: a token is a run of up to 12 word characters or one other visible character,
each with the whitespace before it (trailing whitespace is one token). Joining the tokens
gives back the text exactly, so streaming one token per chunk loses nothing. Prompt tokens
are the tokens of every message's text plus 3 per message and 3 for the reply, in the spirit
of OpenAI's chat accounting.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "OFFLINE_MODEL_ID",
    "OfflineModel",
    "count_tokens",
    "last_user_text",
    "message_text",
    "prompt_tokens",
    "tokenize",
]

OFFLINE_MODEL_ID = "behest-offline"
MAX_LONG_TOKENS = 1_000_000
_TOKEN = re.compile(r"\s*\w{1,12}|\s*[^\w\s]|\s+")
_WORD = re.compile(r"[A-Za-z0-9]+")
_LONG = re.compile(r"long:\s*(\d+)\s*$", re.IGNORECASE)
_ECHO_PREFIX = "echo:"

_OPENINGS = (
    "Here is a short, practical answer",
    "Good question; the essentials fit in a few lines",
    "In brief, it comes down to three things",
    "A quick overview follows",
)
_POINTS = (
    "Start from the smallest working example and grow it step by step.",
    "Keep secrets on the server; the browser only ever sees short-lived tokens.",
    "Measure before optimising, then change one thing at a time.",
    "Write the test first, so the behaviour is pinned down.",
    "Prefer plain data structures over clever abstractions.",
    "Handle errors at one boundary and keep the message short.",
    "Stream partial results so people see progress early.",
    "Name things after what they mean, not how they work.",
)
_METHODS = ("title", "upper", "lower", "casefold", "swapcase")
_CLOSINGS = (
    "That should be enough to get going.",
    "Adjust the details to your setup.",
    "Ask again for more depth on any point.",
)
_LONG_PASSAGE = """## Streaming in practice

Streaming sends the answer as it is produced, one small piece at a time, so the reader sees
progress at once and can stop early when the answer goes astray.

1. The client opens one request and keeps reading.
2. The server writes a frame for every few tokens.
3. A final frame carries the finish reason, then the stream ends.

```python
async def read_stream(lines):
    async for line in lines:
        if line == "data: [DONE]":
            break
        yield line
```

- Keep frames small.
- Flush often.
- Close the connection when the reader goes away.

"""


def tokenize(text: str) -> list[str]:
    """Split text into tokens whose concatenation is the text.

    Args:
        text: any string.

    Returns:
        The tokens, in order.
    """
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """Count the tokens of ``text`` (see the module docstring)."""
    return sum(1 for _ in _TOKEN.finditer(text))


def message_text(content: Any) -> str:
    """The text of a chat message's ``content`` (a string or a list of parts).

    Args:
        content: OpenAI ``content``: str, list of ``{"type": "text", "text": ...}``, or None.

    Returns:
        The text parts joined with newlines; other parts are skipped.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Count the prompt tokens of a chat request.

    Args:
        messages: OpenAI-shaped messages.

    Returns:
        Tokens of every message's text, plus 3 per message, plus 3.
    """
    return 3 + sum(3 + count_tokens(message_text(m.get("content"))) for m in messages)


class OfflineModel:
    """Deterministic answers from the last user message; see the module docstring."""

    model_id = OFFLINE_MODEL_ID

    def answer(self, messages: Sequence[dict[str, Any]]) -> Iterator[str]:
        """The answer's tokens, produced lazily.

        Args:
            messages: OpenAI-shaped messages.

        Returns:
            An iterator of tokens; joined, they form the answer.
        """
        prompt = last_user_text(messages)
        stripped = prompt.lstrip()
        if stripped[: len(_ECHO_PREFIX)].lower() == _ECHO_PREFIX:
            text = stripped[len(_ECHO_PREFIX) :]
            return iter(tokenize(text[1:] if text.startswith(" ") else text))
        long_match = _LONG.match(stripped)
        if long_match and 1 <= int(long_match.group(1)) <= MAX_LONG_TOKENS:
            return _long_answer(int(long_match.group(1)))
        return iter(tokenize(compose_answer(prompt)))


def compose_answer(prompt: str) -> str:
    """The markdown answer for an ordinary prompt.

    Only the prompt's letters and digits are reused, so markup in a prompt never reaches
    the answer (``echo:`` exists for that).

    Args:
        prompt: the last user message.

    Returns:
        Markdown with a heading, a sentence, a bulleted list and a python code block.
    """
    words = _WORD.findall(prompt)
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    topic_words = [w[:12] for w in words[:6]] or ["your", "question"]
    topic = " ".join(topic_words)
    start = seed % len(_POINTS)
    points = [_POINTS[(start + step * 3) % len(_POINTS)] for step in range(3)]
    name = "_".join(w.lower() for w in topic_words[:3]) or "answer"
    if name[0].isdigit():
        name = "n_" + name
    method = _METHODS[seed % len(_METHODS)]
    lines = [
        f"## {topic[:1].upper()}{topic[1:]}",
        "",
        f"{_OPENINGS[seed % len(_OPENINGS)]} about *{topic.lower()}*:",
        "",
        *[f"- {point}" for point in points],
        "",
        "```python",
        f"def {name}(text: str) -> str:",
        f'    """Return the text in {method} case."""',
        f"    return text.strip().{method}()",
        "```",
        "",
        _CLOSINGS[seed % len(_CLOSINGS)],
    ]
    return "\n".join(lines)


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    """The text of the last ``user`` message, or "" when there is none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _long_answer(count: int) -> Iterator[str]:
    return itertools.islice(itertools.cycle(tokenize(_LONG_PASSAGE)), count)
