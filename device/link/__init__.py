"""Link helpers shared by the bridge and the simulator (asyncio, no protocol logic)."""

from .reconnect import Backoff, reconnect_forever

__all__ = ["Backoff", "reconnect_forever"]
