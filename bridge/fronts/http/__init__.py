"""HTTP front (aiohttp): health, Prometheus metrics and the local control API the CLI uses."""
