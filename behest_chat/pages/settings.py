"""The settings page: mode, endpoints, ids, TTL, tier, and the allowed-origins check."""

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


def settings_page() -> rx.Component:
    """Read-only configuration; keys appear only as a fingerprint."""
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
