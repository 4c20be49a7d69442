"""A local Behest-compatible gateway: a standalone Starlette app.

Run it with ``python -m behest_chat.gateway``, embed it with :func:`serve`, or build the
ASGI app with :func:`create_app`. Settings: :class:`GatewayConfig` (its module docstring
lists every variable). It imports nothing from behest_chat except its own modules and the
shared key parser ``behest_chat.behest.keys``.
"""

from behest_chat.gateway.app import create_app
from behest_chat.gateway.config import GatewayConfig, Project, UpstreamConfig, load_environ
from behest_chat.gateway.embedded import EmbeddedGateway, GatewayStartError, serve

__all__ = [
    "EmbeddedGateway",
    "GatewayConfig",
    "GatewayStartError",
    "Project",
    "UpstreamConfig",
    "create_app",
    "load_environ",
    "serve",
]
