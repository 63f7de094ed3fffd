"""The engine's two entry points; see docs/engine-api.md."""

from outwork.tls.client import ClientConnection, ClientState
from outwork.tls.server import ServerConnection, ServerState

__all__ = ["ClientConnection", "ClientState", "ServerConnection", "ServerState"]
