"""Northbound MQTT: the bridge as a Sparkplug B 3.0 edge node (aiomqtt is imported in this folder only)."""
