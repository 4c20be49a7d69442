"""What a failed turn says: the quota's figures and reset, the kinds of the other failures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from behest_chat.behest import errors
from behest_chat.state.failures import describe_error, explain_failure, quota_message

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()


def quota(**details) -> errors.QuotaExceededError:
    return errors.QuotaExceededError("raw-detail-0", status=402, details=details)


def test_the_quota_message_names_tier_limit_usage_and_reset() -> None:
    exc = quota(tier="pro", limit={"tokens_per_day": 2000000}, usage={"tokens_today": 2000345})
    assert quota_message(exc, NOON) == (
        "The daily quota of the pro tier is reached: 2,000,345 of 2,000,000 tokens used today. "
        "It resets at 00:00 UTC (in 12 h); nothing more is sent until then."
    )
    requests = quota(tier="free", limit={"requests_per_day": 100}, usage={})
    assert "free tier is reached (100 requests a day). It resets" in quota_message(requests, NOON)
    bare = quota()
    assert quota_message(bare, NOON).startswith("The daily quota of the free tier is reached. ")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (quota(tier="free"), "quota"),
        (errors.TimeoutError("raw-detail-1"), "timeout"),
        (errors.RateLimitError("raw-detail-2", retry_after=3), "rate_limited"),
        (errors.ServerError("raw-detail-3", status=503), "server"),
        (errors.StreamCutError("raw-detail-4"), "cut"),
        (errors.ConnectError("raw-detail-5"), "unreachable"),
    ],
)
def test_each_failure_has_a_kind_and_never_the_raw_text(exc, kind) -> None:
    got_kind, text = explain_failure(exc)
    assert got_kind == kind
    assert exc.message not in text
    # The browser-direct path shares these sentences (except the two spelled out here).
    if kind not in ("quota", "timeout"):
        assert (got_kind, text) == describe_error(exc)
