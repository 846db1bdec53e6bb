"""Talking to a built run: entity linking, the chat system, the server, the simulated user (docs/interactive.md)."""
