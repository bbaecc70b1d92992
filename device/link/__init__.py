"""Link helpers shared by the bridge and the simulator (asyncio, no protocol logic)."""

from .reconnect import Backoff, reconnect_forever
from .tls import client_context, server_context

__all__ = ["Backoff", "client_context", "reconnect_forever", "server_context"]
