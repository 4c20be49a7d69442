"""Alembic environment: the app's tables, at the URL the app itself uses.

The URL comes from ``config.attributes["database_url"]`` when called through
``behest_chat.db.upgrade``, else from ``DATABASE_URL`` (environment, then the env file).
"""

from __future__ import annotations

from logging.config import fileConfig

from sqlmodel import SQLModel

import behest_chat.tables  # noqa: F401  (registers every table on SQLModel.metadata)
from alembic import context
from behest_chat import db

config = context.config
if config.config_file_name and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata
database_url: str = config.attributes.get("database_url") or db.database_url()


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live connection."""
    with db.engine_for(database_url).connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
