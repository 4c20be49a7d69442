"""The chat page (``/chat`` and ``/chat/<conversation id>``): sidebar, messages, composer.

The message list follows new text only while the reader is at the bottom: scrolling up
stops it and shows "Jump to latest"; reaching the bottom again (or the button) resumes it.
This is decided by the direction of the reader's own scrolling, not by a distance
threshold, so a block that changes height while streaming does not break it.
"""

from __future__ import annotations

import reflex as rx
from reflex_components_core.react_router.dom import ReactRouterLink

from behest_chat.api.export import export_path
from behest_chat.components.composer import composer
from behest_chat.components.layout import page, testid
from behest_chat.components.message import message
from behest_chat.components.sidebar import sidebar
from behest_chat.state.chat import ChatState

# Installed once per scroll box; window.behestScroll.follow() scrolls to the end and follows.
_SCROLL_JS = """(() => {
  const api = window.behestScroll || (window.behestScroll = {});
  api.follow = () => {
    const box = document.getElementById("messages-scroll");
    if (!box) return;
    box.dataset.follow = "true";
    box.scrollTop = box.scrollHeight;
  };
  if (!window.__behestJump) {
    window.__behestJump = true;
    document.addEventListener("click", (e) => {
      if (!e.target.closest) return;
      if (e.target.closest('[data-testid="jump-to-latest"]')) api.follow();
      const box = document.getElementById("messages-scroll");
      // Older messages go above: keep the one the reader was looking at in place.
      if (box && e.target.closest('[data-testid="load-older"]')) {
        box.__anchor = {height: box.scrollHeight, top: box.scrollTop};
      }
    }, true);
  }
  const box = document.getElementById("messages-scroll");
  if (!box || box.__behestScroll) { api.follow(); return; }
  box.__behestScroll = true;
  let lastTop = box.scrollTop;
  const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 8;
  box.addEventListener("scroll", () => {
    if (atBottom()) box.dataset.follow = "true";
    else if (box.scrollTop < lastTop - 1) box.dataset.follow = "false";
    lastTop = box.scrollTop;
  }, {passive: true});
  new MutationObserver(() => {
    const anchor = box.__anchor;
    if (anchor && box.scrollHeight !== anchor.height) {
      box.__anchor = null;
      box.scrollTop = anchor.top + box.scrollHeight - anchor.height;
      lastTop = box.scrollTop;
    } else if (box.dataset.follow !== "false") box.scrollTop = box.scrollHeight;
  }).observe(box, {childList: true, subtree: true, characterData: true});
  api.follow();
})()"""

_CHAT_CSS = """
#messages-wrap [data-testid="jump-to-latest"] { display: none; }
#messages-wrap #messages-scroll[data-follow="false"] ~ [data-testid="jump-to-latest"] {
  display: inline-flex;
}
:is([data-testid="message"], [data-testid="live-draft"], [data-testid="direct-draft"]) table {
  border-collapse: collapse; margin: 0.5em 0; display: block; overflow-x: auto;
}
:is([data-testid="message"], [data-testid="live-draft"], [data-testid="direct-draft"])
  :is(th, td) {
  border: 1px solid var(--gray-a6); padding: 0.3em 0.75em; text-align: left;
}
.visually-hidden {
  position: absolute !important; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap;
}
"""


def _empty_state() -> rx.Component:
    return rx.cond(
        ChatState.missing,
        rx.callout(
            "This conversation does not exist, or it is not yours.",
            icon="circle-alert",
            color="amber",
            **testid("conversation-missing"),
        ),
        rx.cond(
            (ChatState.messages.length() == 0)
            & (ChatState.tail.length() == 0)
            & ~ChatState.busy,
            rx.center(
                rx.text("Ask a question to start.", color_scheme="gray", **testid("empty-chat")),
                padding_top="20vh",
                width="100%",
            ),
        ),
    )


def _messages() -> rx.Component:
    return rx.box(
        rx.el.style(_CHAT_CSS),
        rx.box(
            rx.vstack(
                rx.cond(
                    ChatState.has_older,
                    rx.center(
                        rx.button(
                            "Load older messages",
                            variant="soft",
                            size="1",
                            on_click=ChatState.load_older,
                            **testid("load-older"),
                        ),
                        width="100%",
                    ),
                ),
                _empty_state(),
                # One list in the page, so that a row moved from the tail into the window
                # (a fold) keeps what it rendered.
                rx.foreach(ChatState.messages + ChatState.tail, message),
                spacing="3",
                width="100%",
                max_width="52em",
                margin_x="auto",
                padding=["1em 0.75em", "1.5em"],
                custom_attrs={
                    "role": "log",
                    "aria-live": "polite",
                    "aria-label": "Conversation",
                    "data-testid": "messages",
                },
            ),
            id="messages-scroll",
            height="100%",
            overflow_y="auto",
            on_mount=rx.call_script(_SCROLL_JS),
        ),
        rx.button(
            rx.icon("arrow-down", size=14),
            "Jump to latest",
            size="1",
            radius="full",
            position="absolute",
            bottom="0.75em",
            left="50%",
            transform="translateX(-50%)",
            aria_label="Jump to the latest message",
            **testid("jump-to-latest"),
        ),
        id="messages-wrap",
        position="relative",
        flex="1",
        min_height="0",
        width="100%",
    )


def _mobile_bar() -> rx.Component:
    return rx.hstack(
        rx.button(
            rx.icon("menu", size=16),
            "Conversations",
            variant="ghost",
            size="2",
            on_click=ChatState.toggle_sidebar,
            aria_expanded=rx.cond(ChatState.sidebar_open, "true", "false"),
            flex_shrink="0",
            **testid("toggle-sidebar"),
        ),
        rx.text(
            ChatState.title,
            weight="bold",
            # One line, cut short, beside the links: not wrapped under them.
            white_space="nowrap",
            overflow="hidden",
            text_overflow="ellipsis",
            flex="1",
            min_width="0",
            **testid("conversation-title"),
        ),
        rx.cond(
            (ChatState.conversation_id != "") & ~ChatState.missing,
            # The browser downloads the file (api/export.py) and stays here; without
            # reload_document the page's router would take the address for a page of its own.
            ReactRouterLink.create(
                rx.icon("download", size=14),
                "Export",
                to=export_path(ChatState.conversation_id),
                reload_document=True,
                download="",
                title="Download this conversation as Markdown",
                display="inline-flex",
                align_items="center",
                gap="0.3em",
                flex_shrink="0",
                font_size="var(--font-size-1)",
                color="var(--accent-11)",
                **testid("export"),
            ),
        ),
        width="100%",
        padding_x="0.75em",
        padding_top="0.5em",
        align="center",
    )


def chat_page() -> rx.Component:
    """Sidebar beside the messages (auto-scrolling, announced politely) and the composer."""
    return page(
        rx.hstack(
            sidebar(),
            rx.vstack(
                _mobile_bar(),
                _messages(),
                rx.box(
                    rx.box(composer(), width="100%", max_width="52em", margin_x="auto"),
                    padding=["0.75em", "1em 1.5em"],
                    border_top="1px solid var(--gray-a5)",
                    width="100%",
                ),
                flex="1",
                min_width="0",
                height="100%",
                spacing="0",
            ),
            flex="1",
            min_height="0",
            width="100%",
            spacing="0",
            # Hidden, not left out, until the page's load has found the session: a visitor
            # without one is sent to the sign-in page and never sees an empty chat first.
            display=rx.cond(ChatState.signed_in, "flex", "none"),
        ),
        rx.box(
            ChatState.live_status,
            class_name="visually-hidden",
            custom_attrs={"role": "status", "aria-live": "polite", "data-testid": "live-status"},
        ),
    )
