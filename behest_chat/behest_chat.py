"""Composition root: pages, API routes and lifespan tasks. Wiring only."""

import reflex as rx

from behest_chat import routes
from behest_chat.api import create_api
from behest_chat.outages import backend_exception_handler
from behest_chat.pages.auth_forms import login_page, register_page
from behest_chat.pages.chat import chat_page
from behest_chat.pages.not_found import not_found_page
from behest_chat.pages.settings import settings_page
from behest_chat.pages.usage import usage_page
from behest_chat.services import get_client, lifespan
from behest_chat.settings import get_settings
from behest_chat.state import AuthState, ChatState, SettingsState
from behest_chat.state.usage import UsageState

app = rx.App(
    # Plain <script> tags in the prerendered head run before hydration, so a form sent the
    # moment the page appears is still handled (rx.script would add them only afterwards).
    head_components=[
        rx.el.script(src="/auth.js"),
        rx.el.script(src="/direct.js"),
        rx.el.script(src="/live_queue.js"),
        rx.el.script(src="/composer.js"),
        rx.el.script(src="/copy.js"),
    ],
    api_transformer=create_api(get_settings(), get_client),
    # A Redis or database outage is named in one calm sentence, not "An error occurred".
    backend_exception_handler=backend_exception_handler,
)
app.register_lifespan_task(lifespan)

# /chat is a new conversation, /chat/<id> an existing one: one page, so no remount between them.
app.add_page(
    chat_page, route=routes.CHAT + "/[[cid]]", title="Chat · behest-chat", on_load=ChatState.load
)
app.add_page(chat_page, route=routes.INDEX, title="behest-chat", on_load=ChatState.load)
app.add_page(usage_page, route="/usage", title="Usage · behest-chat", on_load=UsageState.load)
app.add_page(
    settings_page, route=routes.SETTINGS, title="Settings · behest-chat",
    on_load=SettingsState.load,
)
app.add_page(
    login_page, route=routes.LOGIN, title="Sign in · behest-chat",
    on_load=AuthState.redirect_signed_in,
)
app.add_page(
    register_page, route=routes.REGISTER, title="Create account · behest-chat",
    on_load=AuthState.redirect_signed_in,
)
app.add_page(not_found_page, route="404", title="Page not found · behest-chat")

__all__ = ["ChatState", "app"]
