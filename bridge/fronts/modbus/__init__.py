"""Modbus TCP front (pymodbus is imported here and nowhere else)."""
