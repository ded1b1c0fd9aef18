"""Periodic sweeps that decide what to tell whom and when, writing outbox rows."""
