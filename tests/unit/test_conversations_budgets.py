"""Token budgets: the prompt estimate, the allowance, overrides and refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from behest_chat.accounts import service as accounts
from behest_chat.conversations import budgets, store
from behest_chat.gateway.offline import prompt_tokens as gateway_prompt_tokens

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hello world."}],
        [{"role": "user", "content": "a.b(c)[d]{e} == f!? " * 20}],
        [{"role": "user", "content": "x" * 500}],
        [
            {"role": "user", "content": "How do I read a file in Python?"},
            {"role": "assistant", "content": "Use open():\n\n```python\nwith open(p) as f:\n```\n"},
            {"role": "user", "content": "  and   trailing space  "},
        ],
        [{"role": "user", "content": ""}],
    ],
)
def test_the_estimate_is_never_below_the_gateways_count(messages) -> None:
    estimate = budgets.estimate_prompt_tokens(messages)
    assert estimate >= gateway_prompt_tokens(messages)
    assert estimate <= 2 * gateway_prompt_tokens(messages) + 10


def test_format_wait_reads_naturally() -> None:
    assert budgets.format_wait(datetime(2026, 11, 25, tzinfo=UTC), NOON) == "12 h"
    later = datetime(2026, 11, 24, 17, 12, 30, tzinfo=UTC)
    assert budgets.format_wait(later, NOON) == "5 h 13 min"
    assert budgets.format_wait(datetime(2026, 11, 24, 12, 3, tzinfo=UTC), NOON) == "3 min"
    assert budgets.next_utc_midnight(NOON) == datetime(2026, 11, 25, tzinfo=UTC)


def _allowance(used: int, budget: int, cap: int | None = None, in_chat: int = 0):
    return budgets.Allowance(
        tier=1,
        daily_budget=budget,
        used_today=used,
        conversation_cap=cap,
        used_in_conversation=in_chat,
        resets_at=budgets.next_utc_midnight(NOON),
    )


def test_refusal_names_the_limit_the_usage_and_the_reset() -> None:
    assert _allowance(100, 1000).refusal(900, NOON) is None
    kind, text = _allowance(100, 1000).refusal(901, NOON)
    assert kind == "daily_budget"
    assert "free tier" in text and "100 of 1,000 tokens" in text and "about 901" in text
    assert "00:00 UTC, in 12 h" in text
    kind, text = _allowance(0, 1000, cap=50, in_chat=40).refusal(11, NOON)
    assert kind == "conversation_cap" and "40 of its 50 tokens" in text
    assert _allowance(10**9, 0).refusal(10**6, NOON) is None  # 0 = no daily budget


def test_the_daily_refusal_says_whether_waiting_helps() -> None:
    _, partly = _allowance(100, 1000).refusal(901, NOON)
    assert "only 900 of the free tier's daily budget are left" in partly
    assert "used up" not in partly
    _, spent = _allowance(1000, 1000).refusal(1, NOON)
    assert "is used up (1,000 of 1,000 tokens)" in spent and "in 12 h" in spent
    # A question no day's budget holds: the reset is no answer, a shorter question is.
    _, never = _allowance(0, 1000).refusal(1001, NOON)
    assert "about 1,001 tokens" in never and "whole daily budget (0 of 1,000" in never
    assert "00:00 UTC" not in never and "Shorten the question" in never


@pytest.mark.parametrize(
    "text", ["hello world.", "a.b(c)[d]{e} == f!? " * 20, "x" * 500, "中文ℕ² — é ", ""]
)
def test_the_quick_bound_decides_only_far_from_a_limit(text) -> None:
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": text}]
    estimate = budgets.estimate_prompt_tokens(messages)
    assert budgets.prompt_token_bound(messages) >= estimate
    # Near the limit the counted estimate decides, to the token: as refusal() would.
    for room in (estimate - 1, estimate, estimate + 1, 10 * estimate + 100):
        allowance = _allowance(1000 - room, 1000)
        assert allowance.refusal_for(messages, NOON) == allowance.refusal(estimate, NOON)


def test_summary_shows_what_is_left() -> None:
    assert _allowance(1250, 50_000).summary() == "48,750 of 50,000 tokens left today (free)"
    assert _allowance(60_000, 50_000, cap=5000, in_chat=4000).summary() == (
        "0 of 50,000 tokens left today (free) · 1,000 of 5,000 left in this chat"
    )
    assert _allowance(7, 0).summary() == "7 tokens used today (free, no budget)"


def test_allowance_reads_the_ledger_and_the_override(app_db) -> None:
    user = accounts.register("carol", "Carol", "correct horse battery")
    chat = store.create_conversation(user.user_id)
    for day, tokens in ((NOON.replace(day=23), 500), (NOON, 300), (NOON, 200)):
        store.record_usage(store.ledger_entry(
            user_id=user.user_id,
            conversation_id=chat.id,
            session_id=chat.session_id,
            message_id=None,
            prompt_tokens=tokens,
            completion_tokens=0,
            estimated=False,
            when=day,
        ))
    allowance = budgets.allowance_for(
        user.user_id, 1, chat.id, daily_budget=50_000, conversation_cap=None, now=NOON
    )
    assert (allowance.used_today, allowance.used_in_conversation) == (500, 1000)
    assert allowance.remaining_in_conversation is None

    budgets.set_user_budget(user.user_id, daily_tokens=600, conversation_cap=1200)
    allowance = budgets.allowance_for(
        user.user_id, 1, chat.id, daily_budget=50_000, conversation_cap=None, now=NOON
    )
    assert (allowance.remaining_today, allowance.remaining_in_conversation) == (100, 200)
    assert budgets.set_user_budget(user.user_id, daily_tokens=None, conversation_cap=None) is None
    assert budgets.get_user_budget(user.user_id) is None
    with pytest.raises(ValueError, match=r"^daily_tokens: "):
        budgets.set_user_budget(user.user_id, daily_tokens=-1, conversation_cap=None)
