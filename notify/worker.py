"""The notifier's worker: claims queued reminders, sends them, records the outcome.

Several workers may run at once. On PostgreSQL a worker claims a batch with
``FOR UPDATE SKIP LOCKED``; on SQLite the single writer makes the claim atomic.
A claim sets the row to ``sending`` with the worker's name and time. A claimed batch
is handled as one: decided message by message, its SMS grouped by text into as few
calls as possible, at most ``concurrency`` provider calls in flight, each at its turn
in the rate booked for the batch, then every outcome recorded in one statement. Just
before the SMS calls the worker writes, on each of their rows, the reference the calls
carry (Aliyun ``OutId``, Tencent ``SessionContext``) and the wall-clock time.

A worker killed at any moment leaves rows in ``sending``; once stale, the sweeper
(:meth:`Worker.sweep`) takes them back. A row that never reached an SMS call returns
to the queue (a WeChat template message sent twice is dropped by WeChat, by its
``client_msg_id``). A row that did is reconciled first (:meth:`Worker.reconcile`):
the worker asks each provider for its record of that message (Tencent
``DescribeSendRecordList``, Aliyun ``QuerySendDetails``) and marks it sent when one
has it, so nothing is lost and nothing is sent twice. Only when no provider can be
asked (the console provider, or an outage lasting past ``give_up_lookup``) does the
row go back to the queue unconfirmed, with a warning.

Rules at send time: quiet hours hold non-urgent messages until morning; opt-outs
are checked now, not only when planned; each phone gets at most one SMS per 30 s
and ten a day; each provider is held to a rate; a provider that keeps failing is
set aside for a while and the next one takes over. What to do about a failed call
is decided by the :class:`~notify.sms.FailureKind` the provider gives it, never by
its text: "too fast" is paced and asked again; a spent daily limit sets the
provider aside until midnight China time, account trouble (balance, permissions)
for an hour; set-asides are kept in ``sms_provider_status`` for every worker and
the staff UI, and messages that no provider can take meanwhile wait for the first
to come back without spending an attempt. Urgent messages (verification
codes) go first, at any hour, past the per-phone caps, by SMS only, and lapse at
their ``expires_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import and_, bindparam, delete, or_, select, update

from huimin.db import Database, upsert, utcnow
from huimin.metrics import SENDS
from huimin.personal import Vault
from huimin.registry.models import Beneficiary, Binding
from notify.models import (
    DELIVERED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    SKIPPED,
    LateReply,
    OptOut,
    OutboxMessage,
    ProviderStatus,
)
from notify.plan import SEALED_KINDS, VERIFICATION
from notify.render import sms_for, wechat_data
from notify.rules import LOCAL, QuietHours, RateLimiter, SharedRateLimiter, wait_until
from notify.sms import (
    ACCOUNT_KINDS,
    FailureKind,
    ProviderUnavailable,
    SentRecord,
    SmsLookup,
    SmsMessage,
    SmsProvider,
    SmsResult,
)
from notify.wechat import WeChatApi, WeChatUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)

    def delay(self, attempts: int) -> timedelta:
        return min(self.cap, self.base * (2 ** max(attempts - 1, 0)))


@dataclass(frozen=True)
class SetAside:
    """A provider not to be called before ``until``, and why."""

    kind: FailureKind
    reason: str
    until: datetime


@dataclass
class ProviderHealth:
    """Which SMS providers may be called now.

    A provider is set aside after ``threshold`` unreachable calls in a row, for
    ``cooldown``; at once when it says its account cannot send: until the next
    midnight China time for a spent daily limit (the limit resets then), for
    ``account_pause`` for other account trouble (someone has to top up or fix a
    permission; it is tried again after that). "Too fast" never sets it aside.
    Times come from ``clock`` (the worker's).
    """

    threshold: int = 3
    cooldown: timedelta = timedelta(seconds=60)
    account_pause: timedelta = timedelta(hours=1)
    clock: Callable[[], datetime] = utcnow
    failures: dict[str, int] = field(default_factory=dict)
    aside: dict[str, SetAside] = field(default_factory=dict)

    def usable(self, name: str) -> bool:
        entry = self.aside.get(name)
        return entry is None or entry.until <= self.clock()

    def failed(self, name: str, reason: str = "") -> SetAside | None:
        """One more unreachable call; the set-aside when that makes ``threshold``."""
        self.failures[name] = self.failures.get(name, 0) + 1
        if self.failures[name] < self.threshold:
            return None
        self.failures[name] = 0
        return self.set_aside(name, FailureKind.UNREACHABLE,
                              f"{self.threshold} calls in a row failed: {reason}")

    def set_aside(self, name: str, kind: FailureKind, reason: str) -> SetAside:
        now = self.clock()
        if kind is FailureKind.DAILY_QUOTA:
            until = next_china_midnight(now)
        elif kind is FailureKind.ACCOUNT:
            until = now + self.account_pause
        else:
            until = now + self.cooldown
        entry = SetAside(kind, reason[:200], until)
        self.aside[name] = entry
        self.failures[name] = 0
        shown = until.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M")
        if kind is FailureKind.DAILY_QUOTA:
            log.warning("SMS provider %s set aside until %s China time: its daily sending "
                        "limit is spent (%s)", name, shown, reason)
        elif kind is FailureKind.ACCOUNT:
            log.error("SMS provider %s set aside until %s China time: its account cannot "
                      "send (%s). Fix it in the provider's console (balance, package, "
                      "permissions, keys); it is tried again then", name, shown, reason)
        else:
            log.warning("SMS provider %s set aside until %s China time: %s", name, shown,
                        reason)
        return entry

    def worked(self, name: str) -> None:
        self.failures[name] = 0

    def back_at(self, names: Sequence[str]) -> datetime | None:
        """When the first of ``names`` may be called again (now if one may), or None
        when there are none."""
        now = self.clock()
        times = [now if self.usable(n) else self.aside[n].until for n in names]
        return min(times) if times else None


@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    kind: str
    beneficiary_id: int
    urgent: bool
    params: Mapping[str, str]
    attempts: int
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one message; ``state`` None means 'try again at not_before'."""

    state: str | None
    channel: str | None = None
    provider: str | None = None
    message_id: str | None = None
    error: str | None = None
    not_before: datetime | None = None
    counts_as_attempt: bool = True
    held_for_quiet_hours: bool = False


@dataclass
class Recipient:
    openids: list[str]
    self_opted_out: bool
    phone: str | None
    phone_hash: str | None
    sms_opted_out: bool


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


class Worker:
    """Sends what is queued in the outbox."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        county: Mapping[str, Any],
        sms: Sequence[SmsProvider],
        phone_limiter: Any,
        *,
        wechat: WeChatApi | None = None,
        wechat_templates: Mapping[str, str] | None = None,
        quiet: QuietHours | None = None,
        rate: float = 50.0,
        batch: int = 200,
        concurrency: int = 32,
        stale_after: timedelta = timedelta(minutes=2),
        retry: RetryPolicy | None = None,
        name: str | None = None,
        clock: Any = utcnow,
        urgent_only: bool = False,
        rate_store: Any = None,
        lookup_rate: float = 8.0,
        give_up_lookup: timedelta = timedelta(hours=1),
    ) -> None:
        self.db, self.vault, self.county = db, vault, county
        self.sms = list(sms)
        self.phone_limiter = phone_limiter
        self.wechat = wechat
        self.wechat_templates = dict(wechat_templates or {})
        self.quiet = quiet or QuietHours()
        # Each provider's rate is shared by every worker when there is a store (Redis or
        # the database); without one (tests) it holds for this worker alone.
        self.rates: dict[str, Any] = {
            p.name: SharedRateLimiter(rate_store, f"sms:{p.name}", rate) if rate_store
            else RateLimiter(rate) for p in self.sms}
        self.wechat_rate: Any = (SharedRateLimiter(rate_store, "wechat", rate) if rate_store
                                 else RateLimiter(rate))
        self.batch, self.concurrency = batch, concurrency
        self._calls = asyncio.Semaphore(concurrency)  # provider and WeChat calls in flight
        self.stale_after = stale_after
        self.retry = retry or RetryPolicy()
        self.health = ProviderHealth(clock=clock)
        self._health_read = -HEALTH_REFRESH  # monotonic time the set-asides were last read
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.summary = RunSummary()
        self.clock = clock  # tests and benchmarks pass a fixed clock
        self.urgent_only = urgent_only  # a bot process's courier: verification codes only
        # Providers' lookup APIs are slow and rate limited (Tencent: 10 calls/s).
        self.lookup_rates = {p.name: RateLimiter(lookup_rate, burst=0.2) for p in self.sms}
        self.give_up_lookup = give_up_lookup
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    # ----- the loop ------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the messages in hand, claim no more (SIGTERM)."""
        self._stopping.set()
        self._wake.set()

    async def close(self) -> None:
        """Close the providers' and WeChat's HTTP sessions."""
        if self.wechat is not None:
            await self.wechat.close()
        for provider in self.sms:
            close = getattr(provider, "close", None)
            if close is not None:
                await close()

    def wake(self) -> None:
        """Something was just queued: look now instead of at the next idle tick."""
        self._wake.set()

    async def run(self, once: bool = False, idle: float = 1.0,
                  progress: Any = None) -> RunSummary:
        """Work until stopped; with ``once``, until nothing is ready to send."""
        await self.sweep()
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            if time.monotonic() - last_sweep > self.stale_after.total_seconds() / 2:
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
        """Send bot replies that missed WeChat's deadline as customer-service messages.

        Each is claimed by setting ``delivered_at`` first (so two workers never both
        send it) and released again if WeChat is unreachable; one WeChat refuses for
        good (the 48-hour window closed, the user left) is dropped with a log line.
        """
        if self.wechat is None:
            return 0
        cutoff = self.clock() - timedelta(hours=48)
        async with self.db.session() as session:
            ids = list((await session.scalars(
                select(LateReply.id).where(and_(LateReply.delivered_at.is_(None),
                                                LateReply.created_at > cutoff))
                .order_by(LateReply.id).limit(limit))).all())
        sent = 0
        for reply_id in ids:
            async with self.db.session() as session:
                claimed = (await session.execute(
                    update(LateReply).where(and_(LateReply.id == reply_id,
                                                 LateReply.delivered_at.is_(None)))
                    .values(delivered_at=self.clock())
                    .returning(LateReply.openid, LateReply.text))).first()
            if claimed is None:
                continue
            try:
                result = await self.wechat.send_text(claimed.openid, claimed.text)
            except WeChatUnavailable:
                result = None
            if result is not None and result.ok:
                sent += 1
                continue
            async with self.db.session() as session:
                if result is not None and result.permanent:
                    log.warning("late reply %s dropped: WeChat refused it (%s)", reply_id,
                                result.errcode)
                    await session.execute(delete(LateReply).where(LateReply.id == reply_id))
                else:
                    await session.execute(update(LateReply).where(LateReply.id == reply_id)
                                          .values(delivered_at=None))
        return sent

    async def sweep(self, limit: int = 500) -> int:
        """Take back stale ``sending`` claims (a killed worker's): rows that never
        reached an SMS call go back to the queue; the others are reconciled with the
        providers first. Returns how many rows were taken back."""
        cutoff = self.clock() - self.stale_after
        stale = and_(OutboxMessage.state == SENDING, OutboxMessage.claimed_at < cutoff)
        async with self.db.session() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(and_(stale, OutboxMessage.sms_started_at.is_(None)))
                .values(state=QUEUED, claimed_by=None, claimed_at=None))
            rows = (await session.execute(
                select(*_CLAIMED_COLUMNS, OutboxMessage.claimed_at, OutboxMessage.sms_ref,
                       OutboxMessage.sms_started_at)
                .where(and_(stale, OutboxMessage.sms_started_at.is_not(None)))
                .order_by(OutboxMessage.id).limit(limit))).all()
            # A lapsed verification code is of no use to anyone: drop it from the row.
            now = self.clock()
            await session.execute(
                update(OutboxMessage)
                .where(and_(OutboxMessage.kind.in_(SEALED_KINDS),
                            OutboxMessage.state != SENDING,
                            OutboxMessage.expires_at < now,
                            OutboxMessage.expires_at > now - timedelta(days=1)))
                .values(params={}))
        if result.rowcount:
            log.warning("returned %s stale claims to the queue", result.rowcount)
        reconciled = await self.reconcile(rows) if rows else 0
        return (result.rowcount or 0) + reconciled

    async def reconcile(self, rows: Sequence[Any]) -> int:
        """Settle stale claims that reached an SMS call: ask the providers whether
        they sent each one; mark it sent (or delivered, or failed) when a provider has
        it, return it to the queue when none has. While a provider cannot be asked,
        the row waits for the next sweep, up to ``give_up_lookup``."""
        lookups = [cast(SmsLookup, p) for p in self.sms if hasattr(p, "find_sent")]
        recipients = await self._recipients({row.beneficiary_id for row in rows})
        now = utcnow()  # providers keep wall-clock times, whatever self.clock says
        settled = 0
        for row in rows:
            claimed = Claimed(*row[:len(_CLAIMED_COLUMNS)])
            recipient = recipients.get(claimed.beneficiary_id)
            started = _aware(row.sms_started_at)
            found: SentRecord | None = None
            unknown = False
            if recipient is not None and recipient.phone and lookups:
                message = sms_for(claimed.kind, self.county, recipient.phone,
                                  self._params(claimed), reference=row.sms_ref or "")
                since = started - LOOKUP_SLACK
                until = min(now, started + LOOKUP_SPAN)
                for provider in lookups:
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
            if found is None and not lookups:
                log.warning("outbox message %s may have gone out before its worker stopped; "
                            "no provider can be asked, so it is queued again", claimed.id)
            settled += await self._settle(claimed, row.claimed_at, started, found)
        return settled

    async def _look_up(self, provider: SmsLookup, message: SmsMessage, since: datetime,
                       until: datetime) -> SentRecord | None:
        """One provider lookup within its rate, asked again when it says "too fast"."""
        async def attempt(_number: int) -> SentRecord | None:
            await self.lookup_rates[provider.name].take()
            return await provider.find_sent(message, since, until)

        return await _until_not_throttled(attempt, lambda number: 0.5 * number)

    async def _settle(self, claimed: Claimed, claimed_at: datetime, started: datetime,
                      found: SentRecord | None) -> int:
        """Write what reconciliation found, if the row is still the stale claim it read."""
        if found is None:
            values: dict[str, Any] = {"state": QUEUED}
        else:
            state = SENT if found.delivered is None else (
                DELIVERED if found.delivered else FAILED)
            values = {"state": state, "channel": "sms", "provider": found.provider,
                      "provider_message_id": found.message_id, "sent_at": started,
                      "attempts": claimed.attempts + 1, "last_error": found.error,
                      "delivered_at": utcnow() if state == DELIVERED else None}
        async with self.db.session() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(and_(OutboxMessage.id == claimed.id, OutboxMessage.state == SENDING,
                            OutboxMessage.claimed_at == claimed_at))
                .values(claimed_by=None, claimed_at=None, sms_started_at=None, **values))
        if not result.rowcount:
            return 0  # another worker settled it first
        if found is None:
            self.summary.requeued += 1
        else:
            self.summary.found_sent += 1
        log.warning("stale claim of outbox message %s: %s", claimed.id,
                    f"{found.provider} had sent it" if found else "queued again")
        return 1

    async def claim(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due messages: urgent ones first, then the rest, each
        earliest due first (one index range each, however long the queue)."""
        now = self.clock()
        async with self.db.session() as session:
            ids: list[int] = []
            for urgent in (True,) if self.urgent_only else (True, False):
                ready = (select(OutboxMessage.id)
                         .where(and_(OutboxMessage.state == QUEUED,
                                     OutboxMessage.urgent == urgent,
                                     OutboxMessage.not_before <= now))
                         .order_by(OutboxMessage.not_before, OutboxMessage.id)
                         .limit(limit - len(ids)))
                if session.bind.dialect.name == "postgresql":
                    ready = ready.with_for_update(skip_locked=True)
                ids += (await session.scalars(ready)).all()
                if len(ids) >= limit:
                    break
            if not ids:
                return []
            rows = (await session.execute(
                update(OutboxMessage)
                .where(and_(OutboxMessage.id.in_(ids), OutboxMessage.state == QUEUED))
                .values(state=SENDING, claimed_by=self.name, claimed_at=now,
                        sms_started_at=None)
                .returning(*_CLAIMED_COLUMNS))).all()
        order = {message_id: i for i, message_id in enumerate(ids)}
        return sorted((Claimed(*row) for row in rows), key=lambda c: order[c.id])

    async def process(self, claimed: Sequence[Claimed]) -> None:
        """Deliver a claimed batch: decide each message (WeChat sent, held, or an SMS to
        send), send the batch's SMS with at most ``concurrency`` calls in flight, then
        record every outcome in one statement. A worker killed in between leaves the
        batch in ``sending``; :meth:`sweep` settles it."""
        recipients = await self._recipients({c.beneficiary_id for c in claimed})
        slots = await self._reserve_phones(claimed, recipients)
        decided = await asyncio.gather(*(
            self._deliver_safely(m, recipients.get(m.beneficiary_id), slots.get(m.id))
            for m in claimed))
        pending = [(m, d) for m, d in zip(claimed, decided, strict=True)
                   if isinstance(d, SmsMessage)]
        sent: dict[int, Outcome] = {}
        if pending:
            await self._read_health()
            # Book the provider's rate for the whole batch first (one round trip to the
            # shared schedule), then mark the rows and send, each call at its turn.
            preferred = next((p for p in self.sms if self.health.usable(p.name)), None)
            booked = None
            if preferred is not None:
                booked = (preferred.name,
                          await self.rates[preferred.name].reserve(len(pending)))
            pending = await self._start_sms(pending)
            sent = await self._send_sms_batch(pending, booked) if pending else {}
        results = [(m, sent[m.id] if isinstance(d, SmsMessage) else d)
                   for m, d in zip(claimed, decided, strict=True)
                   if not isinstance(d, SmsMessage) or m.id in sent]
        await self._record(results)

    async def _start_sms(self, pending: Sequence[tuple[Claimed, SmsMessage]]
                         ) -> list[tuple[Claimed, SmsMessage]]:
        """Before the SMS calls of a chunk, write on each row the reference the calls
        will carry and the wall-clock time (what a crash recovery asks providers
        about), refreshing the claim. Only rows still claimed by this worker are sent:
        one a sweeper took back meanwhile belongs to someone else now."""
        reference = "s" + secrets.token_hex(8)
        async with self.db.session() as session:
            mine = set((await session.scalars(
                update(OutboxMessage)
                .where(and_(OutboxMessage.id.in_([m.id for m, _ in pending]),
                            OutboxMessage.state == SENDING,
                            OutboxMessage.claimed_by == self.name))
                .values(sms_ref=reference, sms_started_at=utcnow(), claimed_at=self.clock())
                .returning(OutboxMessage.id))).all())
        if len(mine) < len(pending):
            log.warning("%d claims were taken back before sending; not sending them",
                        len(pending) - len(mine))
        return [(m, replace(sms, reference=reference)) for m, sms in pending if m.id in mine]

    async def _deliver_safely(self, message: Claimed, recipient: Recipient | None,
                              phone_wait: datetime | None) -> Outcome | SmsMessage:
        try:
            async with self._calls:  # WeChat calls count against the calls in flight
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
        return await self.phone_limiter.reserve_many(wanted, self.clock())

    # ----- delivery ------------------------------------------------------------------
    async def deliver(self, message: Claimed, recipient: Recipient | None,
                      phone_wait: datetime | None = None) -> Outcome | SmsMessage:
        """Decide one message: its outcome (WeChat sent, held, skipped …), or the SMS to
        send with the rest of the chunk. ``phone_wait`` is when its phone may next get
        an SMS (None: now), as reserved for the whole chunk."""
        now = self.clock()
        if message.expires_at is not None and _aware(message.expires_at) <= now:
            return Outcome(state=SKIPPED, error="expired")
        if not message.urgent and self.quiet.is_quiet(now):
            return Outcome(state=None, not_before=self.quiet.next_allowed(now),
                           counts_as_attempt=False, held_for_quiet_hours=True)
        if recipient is None:
            return Outcome(state=SKIPPED, error="no such beneficiary")
        if message.kind == VERIFICATION:  # asked for just now, and proves the phone: SMS
            if recipient.phone is None:
                return Outcome(state=SKIPPED, error="no phone")
            return sms_for(message.kind, self.county, recipient.phone, self._params(message),
                           reference=message.key, urgent=True)
        fallback_reason = None
        if recipient.openids and self.wechat is not None and message.kind in self.wechat_templates:
            outcome = await self._send_wechat(message, recipient.openids)
            if outcome.state == SENT or outcome.state is None:
                return outcome
            fallback_reason = outcome.error
        elif recipient.self_opted_out:
            return Outcome(state=SKIPPED, error="opted out")
        if recipient.phone is None:
            return Outcome(state=FAILED if fallback_reason else SKIPPED,
                           error=fallback_reason or "no phone")
        if recipient.sms_opted_out:
            return Outcome(state=SKIPPED, error="opted out")
        if phone_wait is not None:
            return Outcome(state=None, not_before=phone_wait, counts_as_attempt=False)
        return sms_for(message.kind, self.county, recipient.phone, self._params(message),
                       reference=message.key, urgent=message.urgent)

    def _params(self, message: Claimed) -> Mapping[str, str]:
        if message.kind in SEALED_KINDS:
            return {k: self.vault.decrypt(v) for k, v in message.params.items()}
        return message.params

    async def _send_wechat(self, message: Claimed, openids: Sequence[str]) -> Outcome:
        assert self.wechat is not None
        data = wechat_data(message.kind, self.county, message.params)
        template_id = self.wechat_templates[message.kind]
        results = []
        for openid in openids:
            await self.wechat_rate.take()
            try:
                results.append(await self.wechat.send_template(
                    openid, template_id, data, client_msg_id=f"{message.key}:{openid}"[:64]))
            except WeChatUnavailable as exc:
                return self._retry_later(message, f"wechat: {exc}", channel="wechat")
        delivered = [r for r in results if r.ok]
        if delivered:
            return Outcome(state=SENT, channel="wechat", provider="wechat",
                           message_id=str(delivered[0].msgid))
        if any(r.transient for r in results):
            return self._retry_later(message, f"wechat {results[0].errcode}", channel="wechat")
        reason = "unfollowed" if all(r.unfollowed for r in results) else (
            f"wechat {results[0].errcode}")
        return Outcome(state=FAILED, channel="wechat", error=reason)

    async def _send_sms_batch(self, pending: Sequence[tuple[Claimed, SmsMessage]],
                              booked: tuple[str, float] | None) -> dict[int, Outcome]:
        """Send a batch's SMS: messages with the same template and parameters go in one
        provider call (Tencent takes 200 numbers a call), the calls concurrently.
        ``booked`` is the preferred provider and when the batch's share of its rate
        starts: each call waits for its own turn within that share."""
        by_text: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[Claimed, Any]]] = {}
        for message, sms in pending:
            by_text.setdefault((sms.template, tuple(sorted(sms.params.items()))),
                               []).append((message, sms))
        # No call may carry more numbers than a provider takes in its burst (a second's
        # worth): a bigger one would be refused as too fast however long we waited.
        most = max(1, int(min(r.rate * r.burst for r in self.rates.values())))
        groups = [group[i:i + most] for group in by_text.values()
                  for i in range(0, len(group), most)]
        turns: list[float | None] = []
        offset = 0
        for group in groups:
            offset += len(group)
            if booked is None:
                turns.append(None)
            else:
                limiter = self.rates[booked[0]]
                turns.append(booked[1] + offset / limiter.rate - limiter.burst)
        prepaid = booked[0] if booked else None
        outcomes: dict[int, Outcome] = {}
        for part in await asyncio.gather(*(self._send_sms_group(g, prepaid, turn)
                                           for g, turn in zip(groups, turns, strict=True))):
            outcomes.update(part)
        return outcomes

    async def _send_sms_group(self, group: Sequence[tuple[Claimed, SmsMessage]],
                              prepaid: str | None = None,
                              turn: float | None = None) -> dict[int, Outcome]:
        """Providers in order of preference; what one cannot take for now goes to the
        next; what none took is retried later: soon when the providers only asked us to
        slow down, with backoff otherwise."""
        outcomes: dict[int, Outcome] = {}
        remaining = list(group)
        errors: dict[int, str] = {}
        # Messages that failed for a reason of their own or a provider's passing trouble
        # (the others only met providers whose account cannot send just now).
        tried: set[int] = set()
        throttled = False
        for provider in self.sms:
            if not remaining:
                break
            if not self.health.usable(provider.name):
                continue
            paid = provider.name == prepaid
            try:
                results = await self._send_paced(provider, [sms for _, sms in remaining],
                                                 turn=turn if paid else None)
            except ProviderUnavailable as exc:
                throttled = exc.kind is FailureKind.THROTTLED
                if exc.kind in ACCOUNT_KINDS:
                    await self._set_aside(provider.name, exc.kind, exc.reason)
                else:
                    tried.update(m.id for m, _ in remaining)
                    if not throttled:  # too fast is our fault, not the provider's health
                        entry = self.health.failed(provider.name, exc.reason)
                        if entry is not None:
                            await self._save_aside(provider.name, entry)
                errors.update({m.id: f"{provider.name}: {exc.reason}" for m, _ in remaining})
                continue
            throttled = False
            self.health.worked(provider.name)
            spent = next((r for r in results if not r.accepted and r.kind in ACCOUNT_KINDS),
                         None)
            if spent is not None:  # the limit ran out part way through the call
                assert spent.kind is not None
                await self._set_aside(provider.name, spent.kind, spent.error or spent.kind)
            still = []
            for (message, sms), result in zip(remaining, results, strict=True):
                if result.accepted:
                    outcomes[message.id] = Outcome(state=SENT, channel="sms",
                                                   provider=provider.name,
                                                   message_id=result.message_id)
                elif result.permanent:
                    outcomes[message.id] = Outcome(state=FAILED, channel="sms",
                                                   provider=provider.name,
                                                   error=result.error or "rejected")
                else:
                    errors[message.id] = f"{provider.name}: {result.error}"
                    if result.kind not in ACCOUNT_KINDS:
                        tried.add(message.id)
                    still.append((message, sms))
            remaining = still
        back = self.health.back_at([p.name for p in self.sms])
        for message, _ in remaining:
            error = errors.get(message.id, "no SMS provider available")
            if throttled:
                outcomes[message.id] = Outcome(
                    state=None, channel="sms", error=error[:200], counts_as_attempt=False,
                    not_before=self.clock() + THROTTLED_PAUSE)
            elif message.id not in tried and back is not None and back > self.clock():
                # Every provider is set aside: wait for the first to come back. Not the
                # message's fault, so no attempt is spent (a daily limit can last hours).
                outcomes[message.id] = Outcome(
                    state=None, channel="sms", error=error[:200], counts_as_attempt=False,
                    not_before=back)
            else:
                outcomes[message.id] = self._retry_later(message, error, channel="sms")
        return outcomes

    async def _set_aside(self, name: str, kind: FailureKind, reason: str) -> None:
        await self._save_aside(name, self.health.set_aside(name, kind, reason))

    async def _save_aside(self, name: str, entry: SetAside) -> None:
        """Keep a set-aside where every worker and the staff UI see it."""
        async with self.db.session() as session:
            await upsert(session, ProviderStatus, {
                "provider": name, "kind": str(entry.kind), "reason": entry.reason,
                "set_aside_at": self.clock(), "aside_until": entry.until}, key="provider")

    async def _read_health(self) -> None:
        """Take up the set-asides other workers recorded (every few seconds at most)."""
        if time.monotonic() - self._health_read < HEALTH_REFRESH:
            return
        self._health_read = time.monotonic()
        names = [p.name for p in self.sms]
        async with self.db.session() as session:
            rows = (await session.execute(
                select(ProviderStatus.provider, ProviderStatus.kind, ProviderStatus.reason,
                       ProviderStatus.aside_until)
                .where(ProviderStatus.provider.in_(names)))).all()
        for name, kind, reason, until in rows:
            until = _aware(until)
            mine = self.health.aside.get(name)
            if mine is None or mine.until < until:
                try:
                    failure = FailureKind(kind)
                except ValueError:
                    failure = FailureKind.UNREACHABLE
                self.health.aside[name] = SetAside(failure, reason, until)

    async def _send_paced(self, provider: SmsProvider, messages: Sequence[SmsMessage],
                          turn: float | None = None) -> list[SmsResult]:
        """One call within the provider's rate: at ``turn`` when the batch booked it,
        else booked now (each number counts). When the provider says we are too fast
        (throttled) it is asked again, after a growing pause, up to three times."""
        async def attempt(number: int) -> list[SmsResult]:
            if turn is not None and number == 1:
                await wait_until(turn)
            else:
                await self.rates[provider.name].take(len(messages))
            async with self._calls:
                return await provider.send(messages)

        return await _until_not_throttled(attempt, lambda number: 0.25 * 2 ** (number - 1))

    def _retry_later(self, message: Claimed, error: str, channel: str) -> Outcome:
        attempts = message.attempts + 1
        if attempts >= self.retry.max_attempts:
            return Outcome(state=FAILED, channel=channel, error=f"gave up: {error}"[:200])
        return Outcome(state=None, channel=channel, error=error[:200],
                       not_before=self.clock() + self.retry.delay(attempts))

    # ----- reading and writing ----------------------------------------------------
    async def _recipients(self, beneficiary_ids: set[int]) -> dict[int, Recipient]:
        """Who can be reached how, for a batch: three plain queries (only the columns
        needed: this runs for every batch)."""
        async with self.db.session() as session:
            people = (await session.execute(
                select(Beneficiary.id, Beneficiary.phone_encrypted, Beneficiary.phone_hash)
                .where(Beneficiary.id.in_(beneficiary_ids)))).all()
            bindings = (await session.execute(
                select(Binding.beneficiary_id, Binding.openid, Binding.role)
                .where(and_(Binding.beneficiary_id.in_(beneficiary_ids),
                            Binding.revoked_at.is_(None))))).all()
            addresses = [b.openid for b in bindings] + [p.phone_hash for p in people
                                                        if p.phone_hash]
            opted: set[tuple[str, str]] = set()
            if addresses:
                opted = {(row.channel, row.address) for row in (await session.execute(
                    select(OptOut.channel, OptOut.address)
                    .where(OptOut.address.in_(addresses)))).all()}
        by_person: dict[int, list[Any]] = {}
        for binding in bindings:
            by_person.setdefault(binding.beneficiary_id, []).append(binding)
        recipients = {}
        for person in people:
            own = by_person.get(person.id, [])
            recipients[person.id] = Recipient(
                openids=[b.openid for b in own if ("wechat", b.openid) not in opted],
                self_opted_out=any(b.role == "self" and ("wechat", b.openid) in opted
                                   for b in own),
                phone=self.vault.decrypt(person.phone_encrypted)
                if person.phone_encrypted else None,
                phone_hash=person.phone_hash,
                sms_opted_out=("sms", person.phone_hash) in opted,
            )
        return recipients

    async def _record(self, results: Sequence[tuple[Claimed, Outcome]]) -> None:
        """Write every outcome in one statement (executemany): only rows still claimed by
        this worker change, so a row the sweeper took back is not overwritten."""
        now = self.clock()
        rows = []
        for message, outcome in results:
            self.summary.add(outcome)
            SENDS.labels(outcome.provider or "-", outcome.state or "retry").inc()
            final = outcome.state is not None
            sent = outcome.state == SENT
            rows.append({
                "b_id": message.id,
                "state": outcome.state if final else QUEUED,
                "not_before": now if final else (outcome.not_before or now),
                "held_for_quiet_hours": outcome.held_for_quiet_hours,
                "attempts": message.attempts + (
                    1 if outcome.counts_as_attempt and outcome.state != SKIPPED else 0),
                "last_error": outcome.error,
                "channel": outcome.channel,
                "provider": outcome.provider if sent else None,
                "provider_message_id": outcome.message_id if sent else None,
                "sent_at": now if sent else None,
            })
        if not rows:
            return
        table = OutboxMessage.__table__
        stmt = (update(table)
                .where(and_(table.c.id == bindparam("b_id"), table.c.state == SENDING,
                            or_(table.c.claimed_by == self.name,
                                table.c.claimed_by.is_(None))))
                .values(claimed_by=None, claimed_at=None, sms_started_at=None,
                        **{k: bindparam(k) for k in rows[0] if k != "b_id"}))
        async with self.db.engine.begin() as conn:
            await conn.execute(stmt, rows)


_CLAIMED_COLUMNS = (OutboxMessage.id, OutboxMessage.key, OutboxMessage.kind,
                    OutboxMessage.beneficiary_id, OutboxMessage.urgent, OutboxMessage.params,
                    OutboxMessage.attempts, OutboxMessage.expires_at)
# The window in which a provider's record of a stale SMS call is looked for: from a
# little before the call (clocks differ) to well after it (a call never takes longer).
LOOKUP_SLACK = timedelta(minutes=1)
THROTTLE_TRIES = 3  # calls of one group while the provider says "too fast"
THROTTLED_PAUSE = timedelta(seconds=5)  # then the group waits this long, no attempt counted
HEALTH_REFRESH = 5.0  # seconds between reads of the providers set aside by other workers
LOOKUP_SPAN = timedelta(minutes=10)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _until_not_throttled(attempt: Callable[[int], Awaitable[T]],
                               pause: Callable[[int], float]) -> T:
    """Make ``attempt`` (numbered from 1) until the provider stops saying "too fast":
    at most THROTTLE_TRIES times, waiting its Retry-After or ``pause(number)`` between.
    Any other failure, or the last one, is raised."""
    for number in range(1, THROTTLE_TRIES + 1):
        try:
            return await attempt(number)
        except ProviderUnavailable as exc:
            if number == THROTTLE_TRIES or exc.kind is not FailureKind.THROTTLED:
                raise
            await asyncio.sleep(exc.retry_after or pause(number))
    raise AssertionError("unreachable")


def next_china_midnight(now: datetime) -> datetime:
    """The next 00:00 in China (when providers' daily limits reset), in UTC."""
    day = now.astimezone(LOCAL).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL).astimezone(UTC)
