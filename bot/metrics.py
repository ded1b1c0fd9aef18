"""The service's own measurements, counted where things happen and served by /metrics.

A tiny neutral module: channels and the delivery engine call these functions; the web
admin only reads them (bot/web/health.py). Counters are per process, as Prometheus expects
of a scrape target: with several processes, scrape each one's /metrics. The outbox's
depth is read from the database at scrape time, so it is the same in every process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

UPDATES = Counter(
    "trainingbot_updates_handled",
    "Platform updates handled (outcome: handled, failed)",
    ["channel", "outcome"],
    registry=REGISTRY,
)
HANDLER_SECONDS = Histogram(
    "trainingbot_handler_seconds",
    "Time to answer one update, database work included",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
SENT = Counter(
    "trainingbot_messages_sent",
    "Messages sent (kind: reply to an update, notice from the outbox)",
    ["channel", "kind"],
    registry=REGISTRY,
)
FAILED = Counter(
    "trainingbot_messages_failed",
    "Messages that failed for good or will be retried (kind: reply, notice)",
    ["channel", "kind"],
    registry=REGISTRY,
)
THROTTLED = Counter(
    "trainingbot_rate_limited",
    "429 Too Many Requests answers received from a platform",
    ["channel"],
    registry=REGISTRY,
)
OUTBOX = Gauge(
    "trainingbot_outbox_messages",
    "Outbox rows by status (read from the database at scrape time)",
    ["status"],
    registry=REGISTRY,
)
LAST_API_SUCCESS = Gauge(
    "trainingbot_channel_last_success_timestamp_seconds",
    "When this process last had a successful call to a platform's API (Unix time)",
    ["channel"],
    registry=REGISTRY,
)

_last_success: dict[str, float] = {}


def update_handled(channel: str, *, failed: bool = False) -> None:
    """Count an update handled (or that failed to be handled)."""
    UPDATES.labels(channel, "failed" if failed else "handled").inc()


@contextmanager
def handling(channel: str) -> Iterator[None]:
    """Time the block as the handling of one update."""
    started = time.perf_counter()
    try:
        yield
    finally:
        HANDLER_SECONDS.labels(channel).observe(time.perf_counter() - started)


def sent(channel: str, kind: str, count: int = 1) -> None:
    """Count messages sent; a send is also a successful API call."""
    SENT.labels(channel, kind).inc(count)
    api_succeeded(channel)


def failed(channel: str, kind: str) -> None:
    """Count a message that was not sent."""
    FAILED.labels(channel, kind).inc()


def throttled(channel: str) -> None:
    """Count a 429 answer."""
    THROTTLED.labels(channel).inc()


def api_succeeded(channel: str) -> None:
    """Note that a call to the channel's API just succeeded."""
    now = time.time()
    _last_success[channel] = now
    LAST_API_SUCCESS.labels(channel).set(now)


def last_api_success(channel: str) -> float | None:
    """Return when the channel's API last answered this process (Unix time), or None."""
    return _last_success.get(channel)


def set_outbox_depth(counts: dict[str, int]) -> None:
    """Set the outbox gauge from counts per status (every status, zeros included)."""
    for status, count in counts.items():
        OUTBOX.labels(status).set(count)


def exposition() -> bytes:
    """Return every metric in Prometheus' text format."""
    return generate_latest(REGISTRY)
