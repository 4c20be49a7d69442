"""The settings page: mode, endpoints, ids, TTL, tier, the transport choice, and the
allowed-origins check (as configured, and "Check from this browser" for real)."""

from __future__ import annotations

import reflex as rx

from behest_chat.components.layout import page, testid
from behest_chat.state.settings_page import SettingsState


def _row(label: str, value: rx.Var, name: str) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(label),
        rx.table.cell(rx.code(value, variant="ghost"), **testid(name)),
    )


def _origin_item(origin: rx.Var[str]) -> rx.Component:
    current = origin == SettingsState.browser_origin
    return rx.list_item(
        rx.hstack(
            rx.code(origin),
            rx.cond(current, rx.badge("this browser", color_scheme="green")),
            align="center",
        ),
        custom_attrs={
            "data-testid": "allowed-origin",
            "data-current": rx.cond(current, "true", "false"),
        },
    )


def _origin_check() -> rx.Component:
    # Plain boxes, not callout.text: a <p> may not contain the <p>/<div> children used here.
    return rx.callout.root(
        rx.cond(
            SettingsState.origin_allowed,
            rx.text(
                "This browser's origin ",
                rx.code(SettingsState.browser_origin),
                " is in the list: browser-direct calls to Behest are allowed.",
            ),
            rx.vstack(
                rx.text(
                    "This browser's origin ",
                    rx.code(SettingsState.browser_origin),
                    " is not in the list; browser-direct calls from here will be "
                    "blocked by CORS. Add it to .env and restart:",
                ),
                rx.code_block(
                    SettingsState.origin_fix,
                    language="bash",
                    can_copy=True,
                    wrap_long_lines=True,
                    width="100%",
                    **testid("origin-fix"),
                ),
                width="100%",
            ),
        ),
        color_scheme=rx.cond(SettingsState.origin_allowed, "green", "amber"),
        width="100%",
        overflow_wrap="anywhere",
        custom_attrs={
            "data-testid": "origin-check",
            "data-allowed": rx.cond(SettingsState.origin_allowed, "true", "false"),
        },
    )


def _transport_choice(value: str, label: str, hint: str) -> rx.Component:
    return rx.text(
        rx.flex(
            rx.radio_group.item(value=value, **testid(f"transport-{value}")),
            rx.vstack(
                rx.text(label, weight="medium"),
                rx.text(hint, size="1", color_scheme="gray"),
                spacing="0",
            ),
            spacing="2",
            align="start",
        ),
        as_="label",
        size="2",
    )


def _transport() -> rx.Component:
    return rx.radio_group.root(
        rx.vstack(
            _transport_choice(
                "relay",
                "Server relay",
                "This app's server calls Behest and streams the answer to your page.",
            ),
            _transport_choice(
                "direct",
                "Browser direct",
                "Your page calls Behest itself with your per-user token; this browser's "
                "origin must be in the allowed origins (check it above).",
            ),
            spacing="3",
        ),
        value=SettingsState.transport,
        on_change=SettingsState.choose_transport,
        custom_attrs={"data-testid": "transport", "data-value": SettingsState.transport},
    )


def _check_result() -> rx.Component:
    result = SettingsState.check_result
    return rx.callout.root(
        rx.vstack(
            rx.text(SettingsState.check_message, **testid("origin-check-message")),
            rx.cond(
                SettingsState.check_fix != "",
                rx.code_block(
                    SettingsState.check_fix,
                    language="bash",
                    can_copy=True,
                    wrap_long_lines=True,
                    width="100%",
                    **testid("origin-check-fix"),
                ),
            ),
            rx.cond(
                SettingsState.check_detail != "",
                rx.text(
                    "Detail: ",
                    SettingsState.check_detail,
                    size="1",
                    color_scheme="gray",
                    **testid("origin-check-detail"),
                ),
            ),
            width="100%",
        ),
        color_scheme=rx.match(result, ("pass", "green"), ("origin_blocked", "amber"), "red"),
        width="100%",
        overflow_wrap="anywhere",
        custom_attrs={"data-testid": "origin-check-result", "data-result": result},
    )


def _browser_check() -> rx.Component:
    return rx.vstack(
        rx.text(
            "Fetches a token from this app, then calls the gateway at ",
            rx.code(SettingsState.public_base_url),
            " from this page: a CORS preflight and a one-token request.",
            color_scheme="gray",
            size="2",
        ),
        rx.button(
            "Check from this browser",
            on_click=SettingsState.run_origin_check,
            loading=SettingsState.check_result == "running",
            **testid("origin-check-run"),
        ),
        rx.cond(
            (SettingsState.check_result != "") & (SettingsState.check_result != "running"),
            _check_result(),
        ),
        spacing="3",
        width="100%",
    )


def settings_page() -> rx.Component:
    """Configuration (keys only as a fingerprint), the origin checks and the transport."""
    return page(
        rx.box(
            rx.vstack(
                rx.heading("Settings", size="6"),
                rx.heading("Behest connection", size="4"),
                rx.table.root(
                    rx.table.body(
                        _row("Mode", SettingsState.mode, "setting-mode"),
                        _row("Base URL (server)", SettingsState.base_url, "setting-base-url"),
                        _row(
                            "Base URL (browsers)",
                            SettingsState.public_base_url,
                            "setting-public-base-url",
                        ),
                        _row("Key", SettingsState.key_fingerprint, "setting-key"),
                        _row("Key id (kid)", SettingsState.kid, "setting-kid"),
                        _row("Tenant id", SettingsState.tenant_id, "setting-tenant"),
                        _row("Project id", SettingsState.project_id, "setting-project"),
                        _row("Token TTL (s)", SettingsState.token_ttl, "setting-ttl"),
                        _row("Your plan", SettingsState.tier, "setting-tier"),
                    ),
                    variant="surface",
                    width="100%",
                ),
                rx.heading("Allowed origins", size="4"),
                rx.text(
                    "Browser origins that may call Behest directly (BEHEST_ALLOWED_ORIGINS"
                    "; the local gateway enforces this list).",
                    color_scheme="gray",
                    size="2",
                ),
                rx.unordered_list(
                    rx.foreach(SettingsState.allowed_origins, _origin_item),
                    **testid("allowed-origins"),
                ),
                _origin_check(),
                _browser_check(),
                rx.heading("Transport", size="4"),
                rx.text(
                    "How your chat turns reach Behest.", color_scheme="gray", size="2"
                ),
                _transport(),
                spacing="4",
                width="100%",
            ),
            width="100%",
            max_width="52em",
            margin_x="auto",
            padding="1.5em",
            overflow_y="auto",
        ),
    )
