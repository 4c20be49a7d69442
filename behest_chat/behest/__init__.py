"""Async Behest client: per-user tokens (remote mint or local RS256) and chat completions.

Imports nothing else from ``behest_chat``; see ``client.py`` for the behaviour and
``errors.py`` for the error tree.
"""

from behest_chat.behest import errors
from behest_chat.behest.cache import TokenCache
from behest_chat.behest.client import DEFAULT_TIMEOUT, BehestClient
from behest_chat.behest.sse import ServerSentEvent, SSEDecoder
from behest_chat.behest.streaming import ChatStream
from behest_chat.behest.tokens import MintedToken

__all__ = [
    "DEFAULT_TIMEOUT",
    "BehestClient",
    "ChatStream",
    "MintedToken",
    "SSEDecoder",
    "ServerSentEvent",
    "TokenCache",
    "errors",
]
