"""After a crash: taking back stale claims, and asking the providers what they sent.

A worker killed at any moment leaves rows in ``sending``; once stale, the sweeper
(:meth:`Reconciler.sweep`) takes them back. A row that never reached an SMS call returns
to the queue (a WeChat template message sent twice is dropped by WeChat, by its
``client_msg_id``). A row that did is reconciled first (:meth:`Reconciler.reconcile`):
each provider that can tell (Tencent ``DescribeSendRecordList``, Aliyun
``QuerySendDetails``: its folder's ``lookup``) is asked for its record of that message,
and the row is marked sent when one has it, so nothing is lost and nothing is sent
twice. Only when no provider can be asked (the console provider, or an outage lasting
past ``give_up_lookup``) does the row go back to the queue unconfirmed, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from huimin.clock import utcnow
from notify.claims import Outbox, StaleClaim
from notify.dispatch import until_not_throttled
from notify.render import sms_for
from notify.rules import RateLimiter
from notify.sms import ProviderUnavailable, SentRecord, SmsLookup, SmsMessage, SmsProvider

log = logging.getLogger(__name__)

# The window in which a provider's record of a stale SMS call is looked for: from a
# little before the call (clocks differ) to well after it (a call never takes longer).
LOOKUP_SLACK = timedelta(minutes=1)
LOOKUP_SPAN = timedelta(minutes=10)


@dataclass
class Swept:
    """What one sweep did."""

    taken_back: int = 0  # rows taken back in all (queued again or settled)
    found_sent: int = 0  # stale claims a provider confirmed it had sent
    requeued: int = 0  # stale claims that reached an SMS call, returned to the queue


class Reconciler:
    """Takes back one worker's view of the stale claims and settles them."""

    def __init__(self, outbox: Outbox, providers: Sequence[SmsProvider],
                 county: Mapping[str, Any], *, stale_after: timedelta,
                 lookup_rate: float = 8.0,
                 give_up_lookup: timedelta = timedelta(hours=1)) -> None:
        self.outbox = outbox
        self.county = county
        self.stale_after = stale_after
        self.give_up_lookup = give_up_lookup
        self.lookups = [cast(SmsLookup, p) for p in providers if hasattr(p, "find_sent")]
        # Providers' lookup APIs are slow and rate limited (Tencent: 10 calls/s).
        self.lookup_rates = {p.name: RateLimiter(lookup_rate, burst=0.2) for p in providers}

    async def sweep(self, limit: int = 500) -> Swept:
        """Take back stale ``sending`` claims (a killed worker's): rows that never
        reached an SMS call go back to the queue; the others are reconciled with the
        providers first."""
        requeued, stale = await self.outbox.take_back_stale(self.stale_after, limit)
        swept = await self.reconcile(stale) if stale else Swept()
        swept.taken_back += requeued
        return swept

    async def reconcile(self, rows: Sequence[StaleClaim]) -> Swept:
        """Settle stale claims that reached an SMS call: ask the providers whether
        they sent each one; mark it sent (or delivered, or failed) when a provider has
        it, return it to the queue when none has. While a provider cannot be asked,
        the row waits for the next sweep, up to ``give_up_lookup``."""
        recipients = await self.outbox.recipients({row.message.beneficiary_id for row in rows})
        now = utcnow()  # providers keep wall-clock times, whatever the worker's clock says
        swept = Swept()
        for row in rows:
            claimed = row.message
            recipient = recipients.get(claimed.beneficiary_id)
            started = row.sms_started_at
            found: SentRecord | None = None
            unknown = False
            if recipient is not None and recipient.phone and self.lookups:
                message = sms_for(claimed.kind, self.county, recipient.phone,
                                  self.outbox.params(claimed), reference=row.sms_ref or "")
                since = started - LOOKUP_SLACK
                until = min(now, started + LOOKUP_SPAN)
                for provider in self.lookups:
                    try:
                        found = await self._look_up(provider, message, since, until)
                    except ProviderUnavailable as exc:
                        log.warning("cannot ask %s about outbox message %s: %s", provider.name,
                                    claimed.id, exc.reason)
                        unknown = True
                        continue
                    if found is not None:
                        break
            if found is None and unknown and now - started < self.give_up_lookup:
                continue  # ask again at the next sweep
            if found is None and not self.lookups:
                log.warning("outbox message %s may have gone out before its worker stopped; "
                            "no provider can be asked, so it is queued again", claimed.id)
            if not await self.outbox.settle(row, started, found):
                continue  # another worker settled it first
            swept.taken_back += 1
            if found is None:
                swept.requeued += 1
            else:
                swept.found_sent += 1
            log.warning("stale claim of outbox message %s: %s", claimed.id,
                        f"{found.provider} had sent it" if found else "queued again")
        return swept

    async def _look_up(self, provider: SmsLookup, message: SmsMessage, since: datetime,
                       until: datetime) -> SentRecord | None:
        """One provider lookup within its rate, asked again when it says "too fast"."""
        async def attempt(_number: int) -> SentRecord | None:
            await self.lookup_rates[provider.name].take()
            return await provider.find_sent(message, since, until)

        return await until_not_throttled(attempt, lambda number: 0.5 * number)
