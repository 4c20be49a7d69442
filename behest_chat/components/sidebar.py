"""The conversation list: new chat, search, open, rename, delete (after confirmation).

On wide screens it is a column beside the chat; on narrow ones it is hidden behind the
"Conversations" button and opens over the page (CSS in :data:`SIDEBAR_CSS`).
"""

from __future__ import annotations

import reflex as rx

from behest_chat import routes
from behest_chat.components.layout import testid
from behest_chat.state.chat import ChatState

SIDEBAR_CSS = """
[data-testid="sidebar"] { width: 17rem; flex-shrink: 0; }
@media (max-width: 767px) {
  [data-testid="sidebar"] { display: none !important; }
  [data-testid="sidebar"][data-open="true"] {
    display: flex !important; position: fixed; inset: 3.5rem 0 0 0; width: auto; z-index: 30;
    background: var(--color-background);
  }
}
@media (min-width: 768px) {
  [data-testid="toggle-sidebar"], [data-testid="close-sidebar"] { display: none !important; }
}
"""


def _item(item: rx.Var[dict[str, str]]) -> rx.Component:
    current = item["id"] == ChatState.conversation_id
    return rx.hstack(
        rx.link(
            item["title"],
            href=routes.CHAT + "/" + item["id"],
            flex="1",
            min_width="0",
            overflow="hidden",
            text_overflow="ellipsis",
            white_space="nowrap",
            underline="none",
            color=rx.cond(current, "var(--accent-12)", "var(--gray-12)"),
            weight=rx.cond(current, "bold", "regular"),
            aria_current=rx.cond(current, "page", "false"),
            **testid("conversation-link"),
        ),
        rx.icon_button(
            rx.icon("pencil", size=14),
            size="1",
            variant="ghost",
            aria_label="Rename " + item["title"],
            on_click=ChatState.start_rename(item["id"]),
            **testid("rename"),
        ),
        rx.icon_button(
            rx.icon("trash-2", size=14),
            size="1",
            variant="ghost",
            color_scheme="red",
            aria_label="Delete " + item["title"],
            on_click=ChatState.ask_delete(item["id"]),
            **testid("delete"),
        ),
        width="100%",
        align="center",
        padding="0.35em 0.5em",
        border_radius="8px",
        background=rx.cond(current, "var(--accent-a3)", "transparent"),
        custom_attrs={
            "data-testid": "conversation-item",
            "data-conversation-id": item["id"],
            "data-current": rx.cond(current, "true", "false"),
        },
    )


def rename_dialog() -> rx.Component:
    """A small form for the new title."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Rename conversation"),
            rx.form(
                rx.vstack(
                    rx.input(
                        name="title",
                        default_value=ChatState.rename_title,
                        key=ChatState.rename_id,
                        max_length=120,
                        width="100%",
                        aria_label="Title",
                        auto_focus=True,
                        **testid("rename-input"),
                    ),
                    rx.hstack(
                        rx.button(
                            "Cancel",
                            type="button",
                            variant="soft",
                            on_click=ChatState.cancel_rename,
                        ),
                        rx.button("Save", type="submit", **testid("rename-save")),
                        justify="end",
                        width="100%",
                    ),
                    width="100%",
                ),
                on_submit=ChatState.save_rename,
            ),
        ),
        open=ChatState.rename_id != "",
        on_open_change=lambda _open: ChatState.cancel_rename(),
    )


def delete_dialog() -> rx.Component:
    """Confirmation before a conversation is deleted."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete conversation?"),
            rx.alert_dialog.description(
                "“",
                ChatState.delete_title,
                "” and all its messages will be deleted. "
                "Its token usage stays in your usage figures.",
            ),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button(
                        "Cancel",
                        variant="soft",
                        on_click=ChatState.cancel_delete,
                        **testid("cancel-delete"),
                    ),
                ),
                rx.alert_dialog.action(
                    rx.button(
                        "Delete",
                        color_scheme="red",
                        on_click=ChatState.confirm_delete,
                        **testid("confirm-delete"),
                    ),
                ),
                justify="end",
                spacing="3",
                margin_top="1em",
            ),
        ),
        open=ChatState.delete_id != "",
    )


def sidebar() -> rx.Component:
    """New chat, search and the list of the user's conversations."""
    return rx.vstack(
        rx.el.style(SIDEBAR_CSS),
        rx.hstack(
            rx.button(
                rx.icon("plus", size=14),
                "New chat",
                variant="outline",
                flex="1",
                on_click=rx.redirect(routes.CHAT),
                **testid("new-chat"),
            ),
            rx.icon_button(
                rx.icon("x", size=16),
                variant="ghost",
                aria_label="Close the conversation list",
                on_click=ChatState.toggle_sidebar,
                **testid("close-sidebar"),
            ),
            width="100%",
            align="center",
        ),
        rx.input(
            placeholder="Search conversations",
            default_value=ChatState.search,
            on_change=ChatState.set_search.debounce(250),
            width="100%",
            aria_label="Search conversations",
            type="search",
            **testid("search"),
        ),
        rx.cond(
            ChatState.conversations.length() == 0,
            rx.text(
                rx.cond(
                    ChatState.search != "", "No conversation matches.", "No conversations yet."
                ),
                size="2",
                color_scheme="gray",
                **testid("conversations-empty"),
            ),
        ),
        rx.el.nav(
            rx.vstack(rx.foreach(ChatState.conversations, _item), spacing="1", width="100%"),
            aria_label="Conversations",
            width="100%",
            overflow_y="auto",
            flex="1",
        ),
        rename_dialog(),
        delete_dialog(),
        height="100%",
        padding="1em",
        spacing="3",
        border_right="1px solid var(--gray-a5)",
        custom_attrs={
            "data-testid": "sidebar",
            "data-open": rx.cond(ChatState.sidebar_open, "true", "false"),
        },
    )
