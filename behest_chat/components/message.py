"""One chat message: markdown with raw HTML off, and the mark of a turn that did not finish."""

from __future__ import annotations

import reflex as rx

from behest_chat.components.layout import testid
from behest_chat.state.chat import ChatState


def _code_block(text: str, **props: object) -> rx.Component:
    return rx.code_block(text, can_copy=True, wrap_long_lines=True, **props)


def markdown(text: rx.Var[str]) -> rx.Component:
    """Model output is untrusted: raw HTML is shown as text, never rendered."""
    return rx.markdown(text, use_raw=False, component_map={"codeblock": _code_block})


def bubble(role: rx.Var[str], body: rx.Component, status: rx.Var[str] | str) -> rx.Component:
    """The frame of a message; `data-role` and `data-status` are what tests and styles read."""
    return rx.box(
        body,
        padding="0.75em 1em",
        border_radius="12px",
        max_width="min(46em, 92%)",
        align_self=rx.cond(role == "user", "flex-end", "flex-start"),
        background=rx.cond(role == "user", "var(--accent-a3)", "var(--gray-a2)"),
        border=rx.cond(status == "error", "1px solid var(--red-a7)", "1px solid var(--gray-a4)"),
        custom_attrs={"data-testid": "message", "data-role": role, "data-status": status},
    )


def message(msg: rx.Var[dict[str, str]]) -> rx.Component:
    """A finished message from the history list."""
    return bubble(
        msg["role"],
        rx.fragment(
            rx.cond(
                msg["role"] == "user",
                rx.text(msg["content"], white_space="pre-wrap"),
                markdown(msg["content"]),
            ),
            rx.cond(
                msg["status"] != "done",
                rx.hstack(
                    rx.text(msg["error"], size="2", color_scheme="red", **testid("message-error")),
                    rx.button(
                        "Retry",
                        size="1",
                        variant="soft",
                        on_click=ChatState.retry,
                        disabled=ChatState.busy,
                        **testid("retry"),
                    ),
                    align="center",
                    spacing="3",
                    margin_top="0.5em",
                ),
            ),
        ),
        msg["status"],
    )


_PHASE_TEXT = {
    "connecting": "Connecting…",
    "waiting": "Waiting for the model…",
}


def draft() -> rx.Component:
    """The reply in progress, or the phase before its first token."""
    return rx.cond(
        ChatState.busy,
        bubble(
            "assistant",
            rx.cond(
                ChatState.draft != "",
                markdown(ChatState.draft),
                rx.hstack(
                    rx.spinner(size="2"),
                    rx.text(
                        rx.match(
                            ChatState.phase,
                            ("connecting", _PHASE_TEXT["connecting"]),
                            ("waiting", _PHASE_TEXT["waiting"]),
                            "Streaming…",
                        ),
                        color_scheme="gray",
                        **testid("turn-phase"),
                    ),
                    align="center",
                ),
            ),
            "streaming",
        ),
    )
