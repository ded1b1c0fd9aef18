"""The service's periodic jobs, in the order `trainingbot jobs run-once` runs them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from db import inbox
from jobs.class_changes import announce_changes
from jobs.digests import send_admin_summary, send_head_digests
from jobs.offers import sweep_offers
from jobs.reminders import send_online_links, send_reminders
from jobs.runner import Job, Tick, daily
from jobs.unit_alerts import alert_overdue_approvals, report_lost_contacts, warn_deadlines

# Answered updates are kept this long to recognise a redelivery, then deleted.
INBOX_RETENTION = dt.timedelta(days=7)
MINUTE = dt.timedelta(minutes=1)


async def _sweep_offers(session: AsyncSession, tick: Tick) -> int:
    return await sweep_offers(session, tick.now, tick.settings.chat)


async def _purge_inbox(session: AsyncSession, tick: Tick) -> int:
    return await inbox.purge_answered(session, before=tick.now - INBOX_RETENTION)


JOBS: list[Job] = [
    Job("sweep_offers", MINUTE, _sweep_offers),
    # Before the reminders: a change skips the reminders that no longer hold.
    Job("class_changes", MINUTE, announce_changes),
    Job("reminders", MINUTE, send_reminders),
    Job("online_links", MINUTE, send_online_links),
    Job("overdue_approvals", 15 * MINUTE, alert_overdue_approvals),
    Job("deadline_warnings", 60 * MINUTE, warn_deadlines),
    Job("unreachable_people", 5 * MINUTE, report_lost_contacts),
    daily("head_digest", lambda settings: settings.digest_at, send_head_digests),
    daily("admin_summary", lambda settings: settings.admin_summary_at, send_admin_summary),
    Job("purge_inbox", 60 * MINUTE, _purge_inbox),
]
