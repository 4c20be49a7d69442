"""One chat message: markdown with raw HTML off, the mark of a turn that did not finish,
and the actions under it (copy, retry, continue, regenerate, edit, versions, tokens, trace
id). The answer being written is a message row too, until the stored answer replaces it.

The bubble (``data-testid="message"``) holds only the message itself and, for an answer
that did not finish, the reason; the actions sit in a row below it.
"""

from __future__ import annotations

import reflex as rx
from reflex_base.vars import VarData
from reflex_components_sonner.toast import toast_ref

from behest_chat.components.layout import testid
from behest_chat.components.stable_markdown import stable_markdown
from behest_chat.live_draft import finished_blocks, live_blocks, live_text
from behest_chat.state.chat import ChatState


def copy_script(text: rx.Var[str]) -> rx.EventSpec:
    """Copy ``text`` in the page (``assets/copy.js``); a toast says whether it worked."""
    toast = str(toast_ref)
    # At the top: at the bottom right, where toasts go by default, it would cover Send.
    where = "position: 'top-center'"
    said = (
        f"(ok) => ok ? {toast}.success('Copied.', {{duration: 2000, {where}}})"
        f" : {toast}.error('Could not copy. Select the text and copy it by hand.', {{{where}}})"
    )
    return rx.run_script(
        rx.Var(
            f"behestCopy({text!s}).then({said})",
            _var_data=VarData.merge(text._get_all_var_data(), toast_ref._get_all_var_data()),
        )
    )


def _code_block(text: rx.Var[str], **props: object) -> rx.Component:
    copy = rx.icon_button(
        rx.icon("copy", size=14),
        size="1",
        variant="ghost",
        aria_label="Copy code",
        type="button",
        on_click=copy_script(text),
        position="absolute",
        top="0.6em",
        right="0.6em",
        **testid("copy-code"),
    )
    return rx.code_block(
        text, can_copy=True, copy_button=copy, wrap_long_lines=True, margin_y="1em", **props
    )


def markdown(text: rx.Var[str]) -> rx.Component:
    """Model output is untrusted: raw HTML is shown as text, never rendered."""
    return stable_markdown(text, use_raw=False, component_map={"pre": _code_block})


@rx.memo
def memo_markdown(content: rx.Var[str]) -> rx.Component:
    """Markdown rendered again only when its text changes.

    A finished message: the tab's message list is sent whole when a turn starts or ends,
    and every message on the page would be parsed and highlighted again each time. A block
    of the reply in progress: each new piece would parse and highlight the whole reply.
    """
    return markdown(content)


def bubble(
    role: rx.Var[str] | str, body: rx.Component, status: rx.Var[str] | str, **attrs: object
) -> rx.Component:
    """The frame of a message; `data-role` and `data-status` are what tests and styles read."""
    return rx.box(
        body,
        padding="0.75em 1em",
        border_radius="12px",
        max_width="100%",
        overflow_wrap="anywhere",
        background=rx.cond(role == "user", "var(--accent-a3)", "var(--gray-a2)"),
        border=rx.cond(
            (status == "error") | (status == "interrupted"),
            "1px solid var(--red-a7)",
            "1px solid var(--gray-a4)",
        ),
        custom_attrs={"data-testid": "message", "data-role": role, "data-status": status, **attrs},
    )


def _action(label: str, handler: rx.EventSpec, name: str, **props: object) -> rx.Component:
    return rx.button(
        label,
        size="1",
        variant="ghost",
        on_click=handler,
        disabled=ChatState.busy,
        **props,
        **testid(name),
    )


def _versions(msg: rx.Var[dict[str, str]]) -> rx.Component:
    """``< 2 / 3 >`` between the versions of a message."""
    return rx.cond(
        msg["versions"] != "1",
        rx.hstack(
            rx.icon_button(
                rx.icon("chevron-left", size=14),
                size="1",
                variant="ghost",
                aria_label="Previous version",
                disabled=(msg["version"] == "1") | ChatState.busy,
                on_click=ChatState.show_version(msg["id"], -1),
                **testid("version-prev"),
            ),
            rx.text(
                msg["version"],
                " / ",
                msg["versions"],
                size="1",
                color_scheme="gray",
                **testid("version-label"),
            ),
            rx.icon_button(
                rx.icon("chevron-right", size=14),
                size="1",
                variant="ghost",
                aria_label="Next version",
                disabled=(msg["version"] == msg["versions"]) | ChatState.busy,
                on_click=ChatState.show_version(msg["id"], 1),
                **testid("version-next"),
            ),
            spacing="1",
            align="center",
        ),
    )


def _actions(msg: rx.Var[dict[str, str]]) -> rx.Component:
    is_user = msg["role"] == "user"
    # Regenerate and Continue belong to the last answer only.
    is_last = msg["id"] == ChatState.last_row_id
    return rx.hstack(
        _versions(msg),
        rx.button(
            "Copy",
            size="1",
            variant="ghost",
            aria_label=rx.cond(is_user, "Copy question", "Copy answer"),
            on_click=copy_script(msg["content"]),
            **testid("copy"),
        ),
        rx.cond(
            is_user,
            _action("Edit", ChatState.start_edit(msg["id"]), "edit", aria_label="Edit question"),
        ),
        rx.cond(msg["retry"] == "1", _action("Retry", ChatState.retry(msg["id"]), "retry")),
        rx.cond(
            (msg["continue"] == "1") & is_last,
            _action("Continue", ChatState.continue_answer(msg["id"]), "continue"),
        ),
        rx.cond(
            (msg["regenerate"] == "1") & is_last,
            _action(
                "Regenerate",
                ChatState.regenerate(msg["id"]),
                "regenerate",
                aria_label="Regenerate this answer",
            ),
        ),
        rx.cond(
            msg["tokens"] != "",
            rx.text(msg["tokens"], size="1", color_scheme="gray", **testid("message-tokens")),
        ),
        rx.cond(
            msg["trace_id"] != "",
            rx.el.details(
                rx.el.summary("Details", font_size="var(--font-size-1)", cursor="pointer"),
                rx.text(
                    "Trace id: ",
                    rx.code(msg["trace_id"]),
                    size="1",
                    color_scheme="gray",
                    **testid("trace-id"),
                ),
                **testid("trace-details"),
            ),
        ),
        spacing="3",
        align="center",
        wrap="wrap",
        padding_x="0.25em",
        justify=rx.cond(is_user, "end", "start"),
        **testid("message-actions"),
    )


def _edit_box(msg: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.text_area(
                name="text",
                default_value=msg["content"],
                auto_height=True,
                width="100%",
                aria_label="Edited question",
                **testid("edit-input"),
            ),
            rx.hstack(
                rx.button("Cancel", type="button", variant="soft", on_click=ChatState.cancel_edit),
                rx.button("Send edit", type="submit", **testid("edit-send")),
                justify="end",
                width="100%",
            ),
            width="100%",
        ),
        on_submit=ChatState.submit_edit,
        width="100%",
        **testid("edit-box"),
    )


def message(msg: rx.Var[dict[str, str]]) -> rx.Component:
    """A message row with its actions; the row ``live`` is the answer being written.

    The answer being written and the finished answer that replaces it are the same row
    (same key, same place, same list of blocks), so when the answer ends only the blocks
    whose text changed render again, not the whole answer at once.
    """
    is_user = msg["role"] == "user"
    live = msg["live"] == "1"
    blocks = rx.cond(live, live_blocks(msg["id"]), finished_blocks(msg["content"]))
    answer = rx.box(
        # A line break between blocks, as one markdown render puts there: the text of the
        # answer (textContent, what is copied and searched) keeps its blocks apart.
        rx.foreach(blocks, lambda block: rx.fragment(memo_markdown(content=block), "\n")),
        # Relayed or streamed by the page itself (browser-direct): rendered the same way.
        custom_attrs={
            "data-testid": rx.cond(
                live, rx.cond(ChatState.direct, "direct-draft", "live-draft"), "answer-text"
            )
        },
    )
    body = rx.fragment(
        rx.cond(
            is_user,
            rx.text(msg["content"], white_space="pre-wrap"),
            rx.cond(live & (live_text(msg["id"]) == ""), _phase(), answer),
        ),
        rx.cond(
            (msg["status"] != "done") & (msg["error"] != ""),
            rx.text(
                msg["error"],
                size="2",
                color_scheme="red",
                margin_top="0.5em",
                **testid("message-error", **{"data-kind": msg["kind"]}),
            ),
        ),
    )
    return rx.vstack(
        rx.cond(
            ChatState.editing_id == msg["id"],
            _edit_box(msg),
            bubble(msg["role"], body, msg["status"], **{"data-message-id": msg["id"]}),
        ),
        rx.cond(live, rx.fragment(), _actions(msg)),
        spacing="1",
        align=rx.cond(is_user, "end", "start"),
        align_self=rx.cond(is_user, "flex-end", "flex-start"),
        max_width="min(46em, 92%)",
        width=rx.cond(ChatState.editing_id == msg["id"], "100%", "auto"),
        # Keyed by message, not by place: when the window moves on by a turn, the rows
        # that stay keep their rendered markdown.
        key=msg["id"],
    )


def _phase() -> rx.Component:
    """Before the first text of the answer being written: its phase, or the 429 countdown."""
    return rx.cond(
        ChatState.phase == "rate_limited",
        rx.hstack(
            rx.icon("timer", size=16),
            rx.text(
                "The gateway asked to slow down. Retrying in ",
                rx.el.span(ChatState.retry_in, **testid("countdown-seconds")),
                " s…",
                color_scheme="amber",
                **testid("countdown"),
            ),
            align="center",
        ),
        rx.hstack(
            rx.spinner(size="2"),
            rx.text(
                rx.match(
                    ChatState.phase,
                    ("connecting", "Connecting…"),
                    ("waiting", "Waiting for the model…"),
                    "Streaming…",
                ),
                color_scheme="gray",
                **testid("turn-phase"),
            ),
            align="center",
        ),
    )
