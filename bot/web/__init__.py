"""The web admin: pages for the school's staff and unit heads, /healthz and /metrics."""
