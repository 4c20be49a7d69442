"""The composer: a text area and Send, which becomes Stop while an answer streams.

Enter sends and Shift+Enter adds a line; Enter that confirms an input-method composition
(Chinese, Japanese, Korean …) does not send. The remaining token allowance is shown before
sending; a refusal (budget, quota, a question too long to send) appears above the box and
the text stays in it.
"""

from __future__ import annotations

import reflex as rx
from reflex_base.vars.base import Var

from behest_chat.components.layout import testid
from behest_chat.state.chat import ChatState
from behest_chat.state.turn_store import MAX_QUESTION_CHARS, TOO_LONG

# `isComposing` / keyCode 229: the key belongs to an input method, not to the page.
_ENTER_SENDS = """(e) => {
  if (e.key !== "Enter" || e.shiftKey || e.nativeEvent.isComposing || e.keyCode === 229) return;
  e.preventDefault();
  if (!e.repeat && e.target.form) e.target.form.requestSubmit();
}"""


def notice() -> rx.Component:
    """Why the last send was refused, with a way to dismiss it."""
    return rx.cond(
        ChatState.notice != "",
        rx.callout.root(
            rx.hstack(
                rx.callout.text(ChatState.notice, **testid("composer-notice-text")),
                rx.spacer(),
                rx.icon_button(
                    rx.icon("x", size=14),
                    size="1",
                    variant="ghost",
                    aria_label="Dismiss",
                    on_click=ChatState.dismiss_notice,
                ),
                width="100%",
                align="start",
            ),
            color="red",
            role="alert",
            width="100%",
            size="1",
            **testid("composer-notice", **{"data-kind": ChatState.notice_kind}),
        ),
    )


def too_long_notice() -> rx.Component:
    """A question over ``MAX_QUESTION_CHARS``, said in the page (``assets/composer.js``),
    which keeps it from leaving: the websocket would drop a message that large."""
    # A plain div carries `hidden`: the callout's own styles would override it.
    return rx.el.div(
        rx.callout.root(
            rx.callout.text("", id="composer-too-long-text"),
            color="red",
            role="alert",
            width="100%",
            size="1",
        ),
        id="composer-too-long",
        hidden=True,
        width="100%",
        **testid("composer-too-long"),
    )


def composer() -> rx.Component:
    """Send while idle; the same place holds Stop while a reply streams."""
    return rx.vstack(
        notice(),
        too_long_notice(),
        rx.form(
            rx.hstack(
                rx.text_area(
                    name="prompt",
                    id="prompt",
                    placeholder="Ask anything…",
                    auto_height=True,
                    rows="1",
                    max_height="12em",
                    width="100%",
                    aria_label="Message",
                    # The draft when the page mounts; later drafts come from
                    # ChatState._seed_composer (assets/composer.js).
                    default_value=ChatState.composer_seed,
                    disabled=ChatState.missing,
                    on_blur=ChatState.remember_draft,
                    custom_attrs={
                        "on_key_down": Var(_js_expr=_ENTER_SENDS),
                        "data-testid": "composer-input",
                        "data-max-chars": MAX_QUESTION_CHARS,
                        "data-too-long": TOO_LONG,
                    },
                ),
                rx.cond(
                    ChatState.busy,
                    rx.button(
                        rx.icon("square", size=14),
                        "Stop",
                        type="button",
                        color_scheme="red",
                        on_click=ChatState.stop,
                        aria_label="Stop the answer",
                        aria_keyshortcuts="Escape",
                        title="Stop (Esc)",
                        **testid("stop"),
                    ),
                    rx.button(
                        rx.icon("send-horizontal", size=14),
                        "Send",
                        type="submit",
                        disabled=ChatState.missing,
                        aria_label="Send",
                        **testid("send"),
                    ),
                ),
                width="100%",
                align="end",
            ),
            # Cleared by value, not by form reset: a reset would bring back the loaded draft.
            on_submit=[ChatState.send, rx.call_script("window.behestClearComposer()")],
            width="100%",
        ),
        rx.text(ChatState.allowance, size="1", color_scheme="gray", **testid("remaining-budget")),
        width="100%",
        spacing="2",
    )
