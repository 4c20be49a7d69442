"""SSE decoder: line ends, fields, comments, [DONE], and every possible chunk split."""

import pytest

from behest_chat.behest.sse import DONE, ServerSentEvent, SSEDecodeError, SSEDecoder


def decode_all(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def datas(chunks: list[bytes]) -> list[str]:
    return [event.data for event in decode_all(chunks)]


# A stream that mixes every line ending, multi-line data, comments, fields and multi-byte
# UTF-8 (2-, 3- and 4-byte characters), so any split point lands somewhere interesting.
MIXED_STREAM = (
    b": keep-alive comment\n"
    b'data: {"choices":[{"delta":{"content":"h\xc3\xa9llo"}}]}\n\n'
    b"event: note\r\n"
    b"id: 7\r\n"
    b"data: line one\r\n"
    b"data:line two \xe2\x82\xac\r\n"
    b"\r\n"
    b"data: cr only \xf0\x9f\x99\x82\r"
    b"\r"
    b"retry: 1500\n"
    b"data\n"
    b"\n"
    b"data: [DONE]\n\n"
)
MIXED_EXPECTED = [
    ServerSentEvent(data='{"choices":[{"delta":{"content":"héllo"}}]}'),
    ServerSentEvent(data="line one\nline two €", event="note", id="7"),
    ServerSentEvent(data="cr only 🙂", id="7"),
    ServerSentEvent(data="", id="7", retry=1500),
    ServerSentEvent(data=DONE, id="7"),
]


def test_mixed_stream_in_one_chunk() -> None:
    assert decode_all([MIXED_STREAM]) == MIXED_EXPECTED


def test_every_single_split_point_gives_the_same_events() -> None:
    for cut in range(len(MIXED_STREAM) + 1):
        chunks = [MIXED_STREAM[:cut], MIXED_STREAM[cut:]]
        assert decode_all(chunks) == MIXED_EXPECTED, f"split at byte {cut}"


def test_every_pair_of_split_points_gives_the_same_events() -> None:
    size = len(MIXED_STREAM)
    for first in range(0, size + 1, 3):
        for second in range(first, size + 1, 5):
            chunks = [MIXED_STREAM[:first], MIXED_STREAM[first:second], MIXED_STREAM[second:]]
            assert decode_all(chunks) == MIXED_EXPECTED, f"splits at {first}, {second}"


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 16, 64])
def test_fixed_fragment_sizes(size: int) -> None:
    chunks = [MIXED_STREAM[i : i + size] for i in range(0, len(MIXED_STREAM), size)]
    assert decode_all(chunks) == MIXED_EXPECTED


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_each_line_ending_alone(ending: bytes) -> None:
    stream = b"data: a" + ending + b"data: b" + ending + ending + b"data: c" + ending + ending
    assert datas([stream]) == ["a\nb", "c"]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # If CR and LF were two line ends, the empty line between them would dispatch "a" alone.
    assert datas([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == ["a\nb"]


def test_lone_cr_then_data_in_next_chunk() -> None:
    assert datas([b"data: a\r", b"\r", b"data: b\r\r"]) == ["a", "b"]


def test_utf8_character_split_inside() -> None:
    encoded = "data: 日本🙂\n\n".encode()
    for cut in range(len(encoded) + 1):
        assert datas([encoded[:cut], encoded[cut:]]) == ["日本🙂"]


def test_comments_and_unknown_fields_are_ignored() -> None:
    stream = b":comment\n: another\nfoo: bar\ndata: x\n:trailing\n\n"
    assert decode_all([stream]) == [ServerSentEvent(data="x")]


def test_only_one_leading_space_is_dropped() -> None:
    assert datas([b"data:  two spaces\n\n"]) == [" two spaces"]
    assert datas([b"data:no space\n\n"]) == ["no space"]


def test_event_without_data_is_not_dispatched_and_type_resets() -> None:
    stream = b"event: ping\n\ndata: x\n\n"
    assert decode_all([stream]) == [ServerSentEvent(data="x")]


def test_error_event_keeps_its_type() -> None:
    stream = b'event: error\ndata: {"error": {"code": "server_error"}}\n\n'
    [event] = decode_all([stream])
    assert event.event == "error"
    assert event.data == '{"error": {"code": "server_error"}}'


def test_done_is_an_ordinary_event() -> None:
    assert datas([b"data: [DONE]\n\n"]) == [DONE]


def test_bom_is_skipped_even_when_split() -> None:
    stream = b"\xef\xbb\xbfdata: x\n\n"
    for cut in range(4):
        assert datas([stream[:cut], stream[cut:]]) == ["x"]


def test_id_with_nul_is_ignored() -> None:
    [event] = decode_all([b"id: a\x00b\ndata: x\n\n"])
    assert event.id is None


def test_pending_reports_an_unfinished_event() -> None:
    decoder = SSEDecoder()
    assert not decoder.pending
    assert decoder.feed(b"data: par") == []
    assert decoder.pending
    assert decoder.feed(b"tial\n") == []
    assert decoder.pending
    assert [e.data for e in decoder.feed(b"\n")] == ["partial"]
    assert not decoder.pending


def test_empty_chunk_changes_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert [e.data for e in decoder.feed(b"\n\n")] == ["a"]


def test_invalid_utf8_raises() -> None:
    decoder = SSEDecoder()
    with pytest.raises(SSEDecodeError, match="UTF-8"):
        decoder.feed(b"data: \xff\xfe\n\n")


def test_line_that_never_ends_is_refused() -> None:
    decoder = SSEDecoder(max_line_bytes=64)
    decoder.feed(b"data: " + b"x" * 50)
    with pytest.raises(SSEDecodeError, match="longer than 64"):
        decoder.feed(b"x" * 50)


def test_many_events_in_one_chunk_keep_order() -> None:
    stream = b"".join(f"data: {i}\n\n".encode() for i in range(500))
    assert datas([stream]) == [str(i) for i in range(500)]
