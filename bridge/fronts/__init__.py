"""Fronts: thin adapters, one folder each, that read the live model and submit commands. A front never
imports the session, the link or another front (import contracts in `make lint`)."""
