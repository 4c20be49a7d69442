"""The page for an address the app does not have."""

from __future__ import annotations

import reflex as rx

from behest_chat import routes
from behest_chat.components.layout import page, testid


def not_found_page() -> rx.Component:
    """Says so, and leads back to the chat (which sends a visitor to sign in first)."""
    return page(
        rx.center(
            rx.vstack(
                rx.heading("Page not found", size="6"),
                rx.text("There is no page at this address.", color_scheme="gray"),
                rx.link("Back to the chat", href=routes.CHAT, **testid("back-to-chat")),
                align="center",
                spacing="3",
                **testid("not-found"),
            ),
            flex="1",
        ),
    )
