"""asyncio transports to devices: accept, dial, serial; bytes only, no protocol logic."""
