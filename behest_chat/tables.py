"""Every database table, imported in one place so SQLModel's metadata knows them all.

Alembic's env.py and the schema tests import this; a new table module is added here.
"""

import behest_chat.accounts.models
import behest_chat.conversations.models
import behest_chat.preferences  # noqa: F401

__all__: list[str] = []
