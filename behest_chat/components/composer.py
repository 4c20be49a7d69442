"""The composer: a text area (Enter sends, Shift+Enter adds a line) and Send or Stop."""

from __future__ import annotations

import reflex as rx

from behest_chat.components.layout import testid
from behest_chat.state.chat import ChatState


def composer() -> rx.Component:
    """Send while idle; the same place holds Stop while a reply streams."""
    return rx.form(
        rx.hstack(
            rx.text_area(
                name="prompt",
                id="prompt",
                placeholder="Ask anything…",
                enter_key_submit=True,
                auto_height=True,
                rows="1",
                max_height="12em",
                width="100%",
                aria_label="Message",
                **testid("composer-input"),
            ),
            rx.cond(
                ChatState.busy,
                rx.button(
                    "Stop", type="button", color_scheme="red", on_click=ChatState.stop,
                    **testid("stop"),
                ),
                rx.button("Send", type="submit", **testid("send")),
            ),
            width="100%",
            align="end",
        ),
        on_submit=ChatState.send,
        reset_on_submit=True,
        width="100%",
    )
