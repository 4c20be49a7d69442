"""Page chrome shared by all pages: header with navigation, theme switch and sign-out."""

from __future__ import annotations

import reflex as rx

from behest_chat import routes
from behest_chat.state.auth import AuthState

USAGE_ROUTE = "/usage"


def testid(name: str, **attrs: str) -> dict[str, dict[str, str]]:
    """`custom_attrs` carrying a Playwright `data-testid` (and any other data- attributes)."""
    return {"custom_attrs": {"data-testid": name, **attrs}}


def header() -> rx.Component:
    """Top bar: app name, navigation, theme, the user's display name and Sign out."""
    return rx.hstack(
        rx.link(
            rx.heading(
                "behest-chat", size=rx.breakpoints(initial="3", sm="5"), white_space="nowrap"
            ),
            href=routes.CHAT,
            underline="none",
        ),
        rx.spacer(),
        rx.cond(
            AuthState.signed_in,
            rx.hstack(
                # On a phone the app name already leads to the chat.
                rx.link("Chat", href=routes.CHAT, display=["none", "inline"], **testid("nav-chat")),
                rx.link("Usage", href=USAGE_ROUTE, **testid("nav-usage")),
                rx.link("Settings", href=routes.SETTINGS, **testid("nav-settings")),
                rx.text(
                    AuthState.display_name,
                    color_scheme="gray",
                    display=["none", "none", "block"],
                    **testid("display-name"),
                ),
                rx.button(
                    "Sign out",
                    variant="soft",
                    size="1",
                    on_click=rx.call_script("window.behestAuth.logout()"),
                    **testid("sign-out"),
                ),
                spacing=rx.breakpoints(initial="2", sm="4"),
                align="center",
            ),
        ),
        rx.color_mode.button(
            aria_label="Switch between light and dark theme", **testid("theme-toggle")
        ),
        width="100%",
        padding_x=["0.75em", "1.5em"],
        padding_y="0.75em",
        border_bottom="1px solid var(--gray-a5)",
        align="center",
        spacing=rx.breakpoints(initial="2", sm="3"),
    )


# Phones zoom the page into a text field whose text is smaller than 16 px when it gets
# focus, and leave it zoomed. Radix sizes the field inside its root, so the rule names it.
_FIELDS_CSS = """
@media (pointer: coarse) {
  .rt-TextFieldInput, .rt-TextAreaInput, input, textarea, select { font-size: 16px; }
}
"""


def page(*children: rx.Component, **props: object) -> rx.Component:
    """A full-height page with the header on top."""
    return rx.flex(
        rx.el.style(_FIELDS_CSS),
        header(),
        *children,
        direction="column",
        height="100dvh",
        width="100%",
        **props,
    )
