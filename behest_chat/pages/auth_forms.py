"""Sign-in and registration forms.

The forms post to the app's `/api/auth/*` routes through `assets/auth.js`, which sets the
HttpOnly session cookie and then loads the next page; the password never passes through
Reflex state or the websocket.
"""

from __future__ import annotations

import reflex as rx

from behest_chat import routes
from behest_chat.components.layout import page, testid


def _field(label: str, name: str, kind: str = "text", autocomplete: str = "") -> rx.Component:
    return rx.vstack(
        rx.el.label(label, html_for=name, font_size="0.9em"),
        rx.input(
            id=name,
            name=name,
            type=kind,
            required=True,
            auto_complete=autocomplete,
            width="100%",
            **testid(f"{name}-input"),
        ),
        spacing="1",
        width="100%",
    )


def _card(title: str, form: rx.Component, footer: rx.Component) -> rx.Component:
    return page(
        rx.center(
            rx.card(
                rx.vstack(rx.heading(title, size="6"), form, footer, spacing="4", width="100%"),
                width="min(24em, 92vw)",
                padding="1.5em",
            ),
            flex="1",
        ),
    )


def _error_slot() -> rx.Component:
    return rx.text(
        "", color_scheme="red", size="2", role="alert", **testid("auth-error")
    )


def login_page() -> rx.Component:
    """Sign in with username and password."""
    form = rx.el.form(
        rx.vstack(
            _field("Username", "username", autocomplete="username"),
            _field("Password", "password", "password", "current-password"),
            _error_slot(),
            rx.button("Sign in", type="submit", width="100%", **testid("sign-in")),
            spacing="3",
            width="100%",
        ),
        custom_attrs={"data-auth-form": "login", "data-next": routes.CHAT},
        width="100%",
    )
    footer = rx.text(
        "New here? ", rx.link("Create an account", href=routes.REGISTER), size="2"
    )
    return _card("Sign in", form, footer)


def register_page() -> rx.Component:
    """Create an account (free tier) and sign in."""
    form = rx.el.form(
        rx.vstack(
            _field("Username", "username", autocomplete="username"),
            _field("Display name", "display_name", autocomplete="nickname"),
            _field("Password (at least 8 characters)", "password", "password", "new-password"),
            _error_slot(),
            rx.button("Create account", type="submit", width="100%", **testid("register")),
            spacing="3",
            width="100%",
        ),
        custom_attrs={"data-auth-form": "register", "data-next": routes.CHAT},
        width="100%",
    )
    footer = rx.text(
        "Have an account? ", rx.link("Sign in", href=routes.LOGIN), size="2"
    )
    return _card("Create account", form, footer)
