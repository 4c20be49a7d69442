"""Reflex states. They call services; they never build UI or read os.environ."""

from behest_chat.state.auth import AuthState
from behest_chat.state.chat import ChatState
from behest_chat.state.settings_page import SettingsState

__all__ = ["AuthState", "ChatState", "SettingsState"]
