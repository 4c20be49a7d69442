"""The usage page: tokens per day and per conversation as charts, tables and a CSV."""

from __future__ import annotations

import reflex as rx

from behest_chat.components.layout import page, testid
from behest_chat.state.usage import UsageState


def _day_row(row: rx.Var[dict[str, str | int]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["day"]),
        rx.table.cell(row["requests"], text_align="right"),
        rx.table.cell(row["prompt"], text_align="right"),
        rx.table.cell(row["completion"], text_align="right"),
        rx.table.cell(row["tokens"], text_align="right", **testid("usage-day-tokens")),
        **testid("usage-day-row", **{"data-day": row["day"].to(str)}),
    )


def _conversation_row(row: rx.Var[dict[str, str | int]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["title"], **testid("usage-conversation-title")),
        rx.table.cell(row["requests"], text_align="right"),
        rx.table.cell(row["prompt"], text_align="right"),
        rx.table.cell(row["completion"], text_align="right"),
        rx.table.cell(row["tokens"], text_align="right", **testid("usage-conversation-tokens")),
        **testid("usage-conversation-row", **{"data-session": row["session"].to(str)}),
    )


def _header(first: str) -> rx.Component:
    return rx.table.header(
        rx.table.row(
            rx.table.column_header_cell(first),
            *[
                rx.table.column_header_cell(name, text_align="right")
                for name in ("Requests", "Prompt", "Completion", "Tokens")
            ],
        )
    )


def _bar_chart(data: rx.Var, key: str, label: str, name: str) -> rx.Component:
    return rx.recharts.responsive_container(
        rx.recharts.bar_chart(
            rx.recharts.cartesian_grid(stroke_dasharray="3 3", opacity=0.4),
            rx.recharts.x_axis(data_key=key, tick={"fontSize": 11}),
            rx.recharts.y_axis(tick={"fontSize": 11}, width=60),
            rx.recharts.graphing_tooltip(),
            rx.recharts.bar(
                data_key="prompt",
                stack_id="t",
                fill="var(--accent-7)",
                name="Prompt",
                max_bar_size=48,
            ),
            rx.recharts.bar(
                data_key="completion",
                stack_id="t",
                fill="var(--accent-10)",
                name="Completion",
                max_bar_size=48,
            ),
            rx.recharts.legend(),
            data=data,
        ),
        width="100%",
        height=240,
        custom_attrs={"data-testid": name, "aria-label": label, "role": "img"},
    )


def usage_page() -> rx.Component:
    """Token usage of the signed-in user over the last 30 days."""
    return page(
        rx.box(
            rx.vstack(
                rx.hstack(
                    rx.heading("Token usage", size="6"),
                    rx.spacer(),
                    rx.button(
                        rx.icon("download", size=14),
                        "Download CSV",
                        variant="soft",
                        on_click=UsageState.download_csv,
                        **testid("usage-csv"),
                    ),
                    width="100%",
                    align="center",
                ),
                rx.text(UsageState.window, color_scheme="gray", size="2"),
                rx.hstack(
                    rx.card(
                        rx.text("Tokens, 30 days", size="1", color_scheme="gray"),
                        rx.heading(UsageState.total_tokens, size="5", **testid("usage-total")),
                    ),
                    rx.card(
                        rx.text("Requests, 30 days", size="1", color_scheme="gray"),
                        rx.heading(UsageState.total_requests, size="5", **testid("usage-requests")),
                    ),
                    rx.card(
                        rx.text("Today", size="1", color_scheme="gray"),
                        rx.text(UsageState.allowance, size="2", **testid("usage-allowance")),
                    ),
                    wrap="wrap",
                    spacing="3",
                ),
                rx.heading("Per day", size="4", margin_top="1em"),
                _bar_chart(UsageState.by_day, "label", "Tokens per day", "usage-day-chart"),
                rx.heading("Per conversation", size="4", margin_top="1em"),
                _bar_chart(
                    UsageState.chart_conversations,
                    "title",
                    "Tokens per conversation",
                    "usage-conversation-chart",
                ),
                rx.table.root(
                    _header("Conversation"),
                    rx.table.body(rx.foreach(UsageState.by_conversation, _conversation_row)),
                    width="100%",
                    size="1",
                ),
                rx.heading("Days", size="4", margin_top="1em"),
                rx.table.root(
                    _header("Day (UTC)"),
                    rx.table.body(rx.foreach(UsageState.by_day, _day_row)),
                    width="100%",
                    size="1",
                ),
                width="100%",
                max_width="60em",
                margin_x="auto",
                padding=["1em", "1.5em"],
                spacing="3",
            ),
            flex="1",
            overflow_y="auto",
            width="100%",
        ),
    )
