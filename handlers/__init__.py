"""Conversation flows, written once for every channel (Telegram, Zalo, console)."""
