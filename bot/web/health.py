"""/healthz for load balancers and /metrics for Prometheus."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from sqlalchemy import text

from bot import metrics
from bot.web.core import PROBES, ProbeFailed, public, sessionmaker_of
from db import outbox
from db.models import OutboxStatus

log = logging.getLogger(__name__)

# Each check gets this long; a load balancer's own timeout is usually a few seconds.
CHECK_SECONDS = 5.0


async def _database_ok(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(CHECK_SECONDS), sessionmaker_of(request)() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("healthz: database check failed: %s", type(exc).__name__)
        return False
    return True


@public
async def healthz(request: web.Request) -> web.StreamResponse:
    """Answer 200 when the database and every configured channel answer, else 503.

    The body says which: {"database": "ok", "telegram": "unreachable", …}; a probe's
    facts (ZNS: its tokens and quota) come under "details".
    """
    checks = {"database": "ok" if await _database_ok(request) else "unreachable"}
    details: dict[str, object] = {}
    for probe in request.app[PROBES]:
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                facts = await probe.probe()
            checks[probe.channel] = "ok"
        except ProbeFailed as exc:
            checks[probe.channel], facts = exc.state, exc.facts
        except Exception as exc:
            log.warning("healthz: %s check failed: %s", probe.channel, type(exc).__name__)
            checks[probe.channel], facts = "unreachable", None
        if facts:
            details[probe.channel] = dict(facts)
    healthy = all(state == "ok" for state in checks.values())
    body: dict[str, object] = {"status": "ok" if healthy else "failing", **checks}
    if details:
        body["details"] = details
    return web.Response(
        text=json.dumps(body),
        status=200 if healthy else 503,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@public
async def metrics_page(request: web.Request) -> web.StreamResponse:
    """Serve the metrics in Prometheus' text format; the outbox is counted now."""
    try:
        async with sessionmaker_of(request)() as session:
            counts = await outbox.counts(session)
        metrics.set_outbox_depth({status.value: counts.get(status, 0) for status in OutboxStatus})
    except Exception as exc:
        # The counters are still worth serving; the depth keeps its last value.
        log.warning("metrics: outbox not counted: %s", type(exc).__name__)
    return web.Response(
        body=metrics.exposition(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )
