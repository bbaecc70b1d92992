"""OpenStrom Bridge: OpenStrom energy meters to Modbus TCP and OPC UA."""

__version__ = "0.1.0"
