"""The app's HTTP routes: sign-in/out, registration, and the Behest token endpoint."""

from behest_chat.api.app import TOKEN_PATH, create_api

__all__ = ["TOKEN_PATH", "create_api"]
