"""The chat page."""

from __future__ import annotations

import reflex as rx

from behest_chat.components.composer import composer
from behest_chat.components.layout import page, testid
from behest_chat.components.message import draft, message
from behest_chat.state.chat import ChatState


def chat_page() -> rx.Component:
    """Messages (auto-scrolling, announced politely) above the composer."""
    return page(
        rx.auto_scroll(
            rx.vstack(
                rx.cond(
                    ChatState.messages.length() == 0,
                    rx.center(
                        rx.text(
                            "Ask a question to start.",
                            color_scheme="gray",
                            **testid("empty-chat"),
                        ),
                        padding_top="20vh",
                        width="100%",
                    ),
                ),
                rx.foreach(ChatState.messages, message),
                draft(),
                spacing="3",
                width="100%",
                max_width="52em",
                margin_x="auto",
                padding="1.5em",
                custom_attrs={"aria-live": "polite", "data-testid": "messages"},
            ),
            flex="1",
            width="100%",
        ),
        rx.box(
            rx.hstack(
                rx.button(
                    "New chat",
                    variant="outline",
                    on_click=ChatState.new_conversation,
                    disabled=ChatState.busy,
                    **testid("new-chat"),
                ),
                composer(),
                width="100%",
                max_width="52em",
                margin_x="auto",
                align="end",
            ),
            padding="1em 1.5em",
            border_top="1px solid var(--gray-a5)",
            width="100%",
        ),
    )
