"""Incremental Server-Sent Events decoder: bytes in, events out, no I/O.

Follows the WHATWG event-stream rules (https://html.spec.whatwg.org/multipage/
server-sent-events.html#event-stream-interpretation): lines end with LF, CRLF or a lone CR;
a blank line dispatches the event; ``:`` starts a comment; ``data`` lines are joined with
LF; one space after the colon is dropped; a leading UTF-8 BOM is skipped; an event with no
data is not dispatched. Bytes are split into lines before decoding, so a frame, a CRLF pair
or a multi-byte UTF-8 character may be split across any chunk boundary.

The ``[DONE]`` sentinel is an ordinary event here (``data == "[DONE]"``); what it means is
the stream's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DONE", "SSEDecodeError", "SSEDecoder", "ServerSentEvent"]

DONE = "[DONE]"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
# A peer that never sends a line end must not grow the buffer without bound.
_DEFAULT_MAX_LINE_BYTES = 1 << 20


class SSEDecodeError(ValueError):
    """The byte stream cannot be an event stream (bad UTF-8, or a line that never ends)."""


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    Attributes:
        data: the ``data`` lines joined with LF.
        event: the ``event`` field, or None for the default ``message`` type.
        id: the last event id seen on the stream, or None.
        retry: the ``retry`` field in milliseconds, when this event set one.
    """

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the events completed so far.

    Example:
        decoder = SSEDecoder()
        for chunk in chunks:
            for event in decoder.feed(chunk):
                ...
    """

    def __init__(self, *, max_line_bytes: int = _DEFAULT_MAX_LINE_BYTES) -> None:
        """Create a decoder.

        Args:
            max_line_bytes: longest line accepted before ``SSEDecodeError``.
        """
        self._max_line_bytes = max_line_bytes
        self._buffer = b""
        self._at_start = True
        self._skip_lf = False  # the previous chunk ended in CR; a leading LF completes it
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def pending(self) -> bool:
        """True when bytes or fields of an unfinished event are buffered."""
        return bool(self._buffer or self._data or self._event is not None)

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode the next piece of the stream.

        Args:
            chunk: any number of bytes, split anywhere.

        Returns:
            The events completed by this chunk, in order (often none).

        Raises:
            SSEDecodeError: a line is not UTF-8, or exceeds the line limit.
        """
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._buffer + chunk if self._buffer else chunk
        if self._at_start:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            self._at_start = False
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        # Most streams use LF only; bytes.split is much cheaper than the regex then.
        lines = _LINE_END.split(buffer) if b"\r" in buffer else buffer.split(b"\n")
        rest = lines.pop()
        if len(rest) > self._max_line_bytes:
            raise SSEDecodeError(f"SSE line longer than {self._max_line_bytes} bytes")
        self._buffer = rest
        if buffer.endswith(b"\r"):
            self._skip_lf = True
        events: list[ServerSentEvent] = []
        for raw in lines:
            if not raw:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif raw.startswith(b"data:"):  # the common line, handled without a method call
                value = raw[6:] if raw[5:6] == b" " else raw[5:]
                self._data.append(_decode(value))
            else:
                self._process_line(raw)
        return events

    def _process_line(self, raw: bytes) -> None:
        line = _decode(raw)
        if line[0] == ":":
            return
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = None
            return None
        event = ServerSentEvent(
            data="\n".join(self._data), event=self._event, id=self._last_id, retry=self._retry
        )
        self._data = []
        self._event = None
        self._retry = None
        return event


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SSEDecodeError("SSE line is not valid UTF-8") from None
