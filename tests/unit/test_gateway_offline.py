"""The offline model and its tokenizer."""

from __future__ import annotations

import pytest

from behest_chat.gateway.offline import (
    OfflineModel,
    compose_answer,
    count_tokens,
    message_text,
    prompt_tokens,
    tokenize,
)


def _answer(content: object) -> str:
    return "".join(OfflineModel().answer([{"role": "user", "content": content}]))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "  leading and trailing  ",
        "tabs\tand\nnew\r\nlines\n\n",
        "x" * 40,
        "ünïcödé — dashes… 漢字",
        "<script>alert(1)</script>",
        "```py\nprint('x')\n```",
    ],
)
def test_tokens_join_back_to_the_text(text: str) -> None:
    tokens = tokenize(text)
    assert "".join(tokens) == text
    assert count_tokens(text) == len(tokens)


def test_token_boundaries() -> None:
    assert tokenize("Hi, world!") == ["Hi", ",", " world", "!"]
    assert tokenize("a" * 30) == ["a" * 12, "a" * 12, "a" * 6]
    assert tokenize("end  ") == ["end", "  "]


def test_echo_answers_exactly_the_text() -> None:
    assert _answer("echo: <img src=x onerror=alert(1)>") == "<img src=x onerror=alert(1)>"
    assert _answer("  ECHO:two  spaces kept ") == "two  spaces kept "
    assert _answer("echo:") == ""


@pytest.mark.parametrize("count", [1, 7, 250, 5000])
def test_long_answers_exactly_n_tokens(count: int) -> None:
    tokens = list(OfflineModel().answer([{"role": "user", "content": f"long: {count}"}]))
    assert len(tokens) == count


def test_long_out_of_range_is_an_ordinary_prompt() -> None:
    assert _answer("long: 0").startswith("## Long 0")


@pytest.mark.parametrize(
    "prompt",
    [
        "How do I stream tokens in Python?",
        "hi",
        "",
        "Explain supercalifragilisticexpialidocious internationalization",
        "9 lives of cats",
        "What is CORS and why does my browser block requests to other origins?",
    ],
)
def test_ordinary_prompts_give_deterministic_markdown_of_60_to_120_tokens(prompt: str) -> None:
    first, second = _answer(prompt), _answer(prompt)
    assert first == second
    assert first.startswith("## ")
    assert "\n- " in first
    assert "```python\ndef " in first and first.count("```") == 2
    assert 60 <= count_tokens(first) <= 120
    compile(first.split("```python\n")[1].split("```")[0], "<answer>", "exec")


def test_markup_in_a_prompt_never_reaches_the_answer() -> None:
    answer = compose_answer("<script>alert('x')</script> tell me <b>more</b>")
    assert "<" not in answer and ">" not in answer.replace("->", "")


def test_the_last_user_message_drives_the_answer() -> None:
    messages = [
        {"role": "user", "content": "echo: old"},
        {"role": "assistant", "content": "old"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "echo: new"},
                {"type": "image_url", "image_url": {}},
            ],
        },
        {"role": "system", "content": "be nice"},
    ]
    assert "".join(OfflineModel().answer(messages)) == "new"


def test_message_text_and_prompt_tokens() -> None:
    assert message_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\nb"
    assert message_text(None) == ""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert prompt_tokens(messages) == 3 + (3 + 3) + (3 + 1)
