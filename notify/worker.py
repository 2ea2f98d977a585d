"""The notifier's worker: the loop that composes the parts below.

Each turn it sweeps stale claims now and then (:mod:`notify.reconcile`), sends late bot
replies (:mod:`notify.late_replies`), claims a batch (:mod:`notify.claims`) and handles
it as one: the per-phone caps reserved for the batch in one round trip, each message
decided (:func:`notify.decide.decide`: WeChat, SMS, hold or skip), the WeChat ones sent
(:mod:`notify.wechat_reminders`, falling back to SMS when WeChat refuses), the SMS
booked, marked and sent together (:mod:`notify.dispatch`: grouping, pacing, failover),
then every outcome recorded in one statement.

:meth:`Worker.assemble` builds the parts from the database, the providers and the
settings' values; :func:`notify.service.build_worker` calls it with the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import Vault
from notify.claims import Outbox
from notify.decide import (
    ByWeChat,
    Claimed,
    Hold,
    Outcome,
    Recipient,
    RetryPolicy,
    Skip,
    decide,
)
from notify.dispatch import SmsDispatcher
from notify.health import ProviderHealth, SetAside, next_china_midnight
from notify.late_replies import LateReplies
from notify.models import FAILED, SENT, SKIPPED
from notify.reconcile import Reconciler
from notify.render import sms_for
from notify.rules import QuietHours, RateLimiter, SharedRateLimiter
from notify.sms import SmsMessage, SmsProvider
from notify.wechat import WeChatApi
from notify.wechat_reminders import WeChatReminders

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

__all__ = ["Claimed", "Outcome", "ProviderHealth", "Recipient", "RetryPolicy", "RunSummary",
           "SetAside", "Worker", "next_china_midnight"]


class PhoneLimiter(Protocol):
    """Per-phone caps (:class:`notify.rules.DatabasePhoneLimiter` or the Redis one)."""

    async def reserve_many(self, wanted: Sequence[tuple[int, str]],
                           now: datetime) -> dict[int, datetime | None]: ...


class RateStore(Protocol):
    """A rate schedule shared by every worker (Redis or the database)."""

    async def reserve(self, key: str, cost: float) -> float: ...


@dataclass
class RunSummary:
    sent: int = 0
    held_for_quiet_hours: int = 0
    rescheduled: int = 0
    skipped: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    found_sent: int = 0  # stale claims a provider confirmed it had sent (after a crash)
    requeued: int = 0  # stale claims returned to the queue

    def add(self, outcome: Outcome) -> None:
        if outcome.state == SENT:
            self.sent += 1
        elif outcome.state == SKIPPED:
            self.skipped += 1
        elif outcome.state == FAILED:
            self.failed[outcome.error or "unknown"] += 1
        elif outcome.held_for_quiet_hours:
            self.held_for_quiet_hours += 1
        else:
            self.rescheduled += 1

    def text(self) -> str:
        failed = "，".join(f"{k} {v}" for k, v in self.failed.most_common()) or "无"
        return (f"已发送 {self.sent} 条，夜间暂缓 {self.held_for_quiet_hours} 条，"
                f"稍后重试 {self.rescheduled} 条，不发送（已退订或无联系方式） {self.skipped} 条，"
                f"失败 {sum(self.failed.values())} 条（{failed}）"
                + (f"；中断后核对：服务商已发出 {self.found_sent} 条，重新排队 {self.requeued} 条"
                   if self.found_sent or self.requeued else ""))


@dataclass(frozen=True)
class Parts:
    """What a worker is made of (see :meth:`Worker.assemble`)."""

    outbox: Outbox
    sms: SmsDispatcher
    reconciler: Reconciler
    phones: PhoneLimiter
    wechat: WeChatReminders | None
    late_replies: LateReplies | None
    calls: asyncio.Semaphore  # provider and WeChat calls in flight
    county: Mapping[str, Any]
    quiet: QuietHours
    clock: Clock


class Worker:
    """Sends what is queued in the outbox."""

    def __init__(self, parts: Parts, *, batch: int = 200, urgent_only: bool = False) -> None:
        self.parts = parts
        self.outbox, self.reconciler = parts.outbox, parts.reconciler
        self.clock = parts.clock  # tests and benchmarks pass a fixed clock
        self.batch = batch
        self.urgent_only = urgent_only  # a bot process's courier: verification codes only
        self.summary = RunSummary()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    @classmethod
    def assemble(
        cls, db: Database, vault: Vault, county: Mapping[str, Any],
        sms: Sequence[SmsProvider], phone_limiter: PhoneLimiter, *,
        wechat: WeChatApi | None = None, wechat_templates: Mapping[str, str] | None = None,
        quiet: QuietHours | None = None, rate: float = 50.0, batch: int = 200,
        concurrency: int = 32, stale_after: timedelta = timedelta(minutes=2),
        retry: RetryPolicy | None = None, name: str | None = None, clock: Clock = utcnow,
        urgent_only: bool = False, rate_store: RateStore | None = None,
        lookup_rate: float = 8.0, give_up_lookup: timedelta = timedelta(hours=1),
    ) -> Worker:
        """A worker from its ingredients. Each provider's rate (``rate`` a second) is
        shared by every worker when there is a ``rate_store`` (Redis or the database);
        without one (tests) it holds for this worker alone."""
        def limiter(key: str) -> RateLimiter:
            return SharedRateLimiter(rate_store, key, rate) if rate_store else RateLimiter(rate)

        retry = retry or RetryPolicy()
        calls = asyncio.Semaphore(concurrency)
        outbox = Outbox(db, vault, name or f"{socket.gethostname()}:{os.getpid()}", clock)
        dispatcher = SmsDispatcher(
            sms, db, rates={p.name: limiter(f"sms:{p.name}") for p in sms}, calls=calls,
            health=ProviderHealth(clock=clock), retry=retry, clock=clock)
        reconciler = Reconciler(outbox, sms, county, stale_after=stale_after,
                                lookup_rate=lookup_rate, give_up_lookup=give_up_lookup)
        reminders = None if wechat is None else WeChatReminders(
            wechat, wechat_templates or {}, county, rate=limiter("wechat"), retry=retry,
            clock=clock)
        late = None if wechat is None else LateReplies(db, wechat, clock)
        return cls(Parts(outbox, dispatcher, reconciler, phone_limiter, reminders, late, calls,
                         county, quiet or QuietHours(), clock),
                   batch=batch, urgent_only=urgent_only)

    @property
    def name(self) -> str:
        return self.outbox.name

    @property
    def health(self) -> ProviderHealth:
        return self.parts.sms.health

    # ----- the loop ------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the messages in hand, claim no more (SIGTERM)."""
        self._stopping.set()
        self._wake.set()

    async def close(self) -> None:
        """Close the providers' and WeChat's HTTP sessions."""
        if self.parts.wechat is not None:
            await self.parts.wechat.api.close()
        for provider in self.parts.sms.providers:
            close = getattr(provider, "close", None)
            if close is not None:
                await close()

    def wake(self) -> None:
        """Something was just queued: look now instead of at the next idle tick."""
        self._wake.set()

    async def run(self, once: bool = False, idle: float = 1.0,
                  progress: Callable[[int], object] | None = None) -> RunSummary:
        """Work until stopped; with ``once``, until nothing is ready to send."""
        await self.sweep()
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            if time.monotonic() - last_sweep > self.reconciler.stale_after.total_seconds() / 2:
                await self.sweep()
                last_sweep = time.monotonic()
            late = await self.deliver_late_replies()
            claimed = await self.claim(self.batch)
            if not claimed and not late:
                if once:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), idle)
                self._wake.clear()
                continue
            await self.process(claimed)
            if progress is not None:
                progress(len(claimed))
        return self.summary

    async def deliver_late_replies(self, limit: int = 50) -> int:
        """Send bot replies that missed WeChat's deadline (see :mod:`notify.late_replies`)."""
        if self.parts.late_replies is None:
            return 0
        return await self.parts.late_replies.deliver(limit)

    async def sweep(self, limit: int = 500) -> int:
        """Take back and settle stale claims (see :mod:`notify.reconcile`); how many rows
        were taken back."""
        swept = await self.reconciler.sweep(limit)
        self.summary.found_sent += swept.found_sent
        self.summary.requeued += swept.requeued
        return swept.taken_back

    async def claim(self, limit: int) -> list[Claimed]:
        return await self.outbox.claim(limit, urgent_only=self.urgent_only)

    async def process(self, claimed: Sequence[Claimed]) -> None:
        """Deliver a claimed batch: decide each message (WeChat sent, held, or an SMS to
        send), send the batch's SMS with at most ``concurrency`` calls in flight, then
        record every outcome in one statement. A worker killed in between leaves the
        batch in ``sending``; :meth:`sweep` settles it."""
        recipients = await self.outbox.recipients({c.beneficiary_id for c in claimed})
        slots = await self._reserve_phones(claimed, recipients)
        decided = await asyncio.gather(*(
            self._deliver_safely(m, recipients.get(m.beneficiary_id), slots.get(m.id))
            for m in claimed))
        pending = [(m, d) for m, d in zip(claimed, decided, strict=True)
                   if isinstance(d, SmsMessage)]
        sent: dict[int, Outcome] = {}
        if pending:
            sms = self.parts.sms
            await sms.refresh_health()
            # Book the provider's rate for the whole batch first (one round trip to the
            # shared schedule), then mark the rows and send, each call at its turn.
            booked = await sms.book(len(pending))
            pending = await self.outbox.start_sms(pending)
            sent = await sms.send(pending, booked) if pending else {}
        results = [(m, sent[m.id] if isinstance(d, SmsMessage) else d)
                   for m, d in zip(claimed, decided, strict=True)
                   if not isinstance(d, SmsMessage) or m.id in sent]
        for _, outcome in results:
            self.summary.add(outcome)
        await self.outbox.record(results)

    async def _deliver_safely(self, message: Claimed, recipient: Recipient | None,
                              phone_wait: datetime | None) -> Outcome | SmsMessage:
        try:
            async with self.parts.calls:  # WeChat calls count against the calls in flight
                return await self.deliver(message, recipient, phone_wait)
        except Exception as exc:  # never lose the row over a bug or a surprise
            log.exception("delivering outbox message %s failed", message.id)
            return Outcome(state=None, error=type(exc).__name__)

    async def _reserve_phones(self, chunk: Sequence[Claimed],
                              recipients: Mapping[int, Recipient]) -> dict[int, datetime | None]:
        """Per-phone caps for the messages that may go by SMS, in one round trip:
        message id -> None (go ahead) or when the phone's next slot opens."""
        wanted = []
        for message in chunk:
            recipient = recipients.get(message.beneficiary_id)
            if not message.urgent and recipient is not None and recipient.phone_hash:
                wanted.append((message.id, recipient.phone_hash))
        if not wanted:
            return {}
        return await self.parts.phones.reserve_many(wanted, self.clock())

    async def deliver(self, message: Claimed, recipient: Recipient | None,
                      phone_wait: datetime | None = None) -> Outcome | SmsMessage:
        """One message: its outcome (WeChat sent, held, skipped …), or the SMS to send
        with the rest of the batch. ``phone_wait`` is when its phone may next get an SMS
        (None: now), as reserved for the whole batch."""
        wechat = self.parts.wechat
        now = self.clock()
        kinds: Collection[str] = wechat.templates if wechat is not None else ()
        decision = decide(message, recipient, now, quiet=self.parts.quiet,
                          wechat_kinds=kinds, phone_wait=phone_wait)
        if isinstance(decision, ByWeChat):
            assert wechat is not None
            outcome = await wechat.send(message, decision.openids)
            if outcome.state != FAILED:
                return outcome
            # Refused for good (or given up on): an SMS instead, if there is a phone.
            decision = decide(message, recipient, now, quiet=self.parts.quiet,
                              wechat_kinds=kinds, phone_wait=phone_wait,
                              wechat_refused=outcome.error or "wechat refused")
        if isinstance(decision, Hold | Skip):
            return decision.outcome()
        assert recipient is not None and recipient.phone is not None
        return sms_for(message.kind, self.parts.county, recipient.phone,
                       self.outbox.params(message), reference=message.key,
                       urgent=decision.urgent)
