"""The outbox as the worker sees it: claiming rows, reading recipients, marking the SMS
start, recording outcomes, and taking back or settling stale claims.

Several workers may run at once. On PostgreSQL a worker claims a batch with
``FOR UPDATE SKIP LOCKED``; on SQLite the single writer makes the claim atomic. A claim
sets the row to ``sending`` with the worker's name and time. Just before the SMS calls
the worker writes, on each of their rows, the reference the calls carry (Aliyun
``OutId``, Tencent ``SessionContext``) and the wall-clock time (:meth:`Outbox.start_sms`):
that is what a crash recovery asks providers about. Every write after the claim changes
only rows still claimed by this worker (or still the stale claim that was read), so a
row another worker took back is never overwritten.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update

from huimin.clock import utcnow
from huimin.db import Database
from huimin.metrics import SENDS
from huimin.personal import Vault
from huimin.registry.models import Beneficiary, Binding
from notify.decide import Claimed, Outcome, Recipient
from notify.models import DELIVERED, FAILED, QUEUED, SENDING, SENT, SKIPPED, OptOut, OutboxMessage
from notify.plan import SEALED_KINDS
from notify.sms import SentRecord, SmsMessage

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

CLAIMED_COLUMNS = (OutboxMessage.id, OutboxMessage.key, OutboxMessage.kind,
                   OutboxMessage.beneficiary_id, OutboxMessage.urgent, OutboxMessage.params,
                   OutboxMessage.attempts, OutboxMessage.expires_at)


@dataclass(frozen=True)
class StaleClaim:
    """A claim left by a worker that stopped after its SMS call had started."""

    message: Claimed
    claimed_at: datetime
    sms_ref: str | None
    sms_started_at: datetime


class Outbox:
    """Claims and settles outbox rows for one worker (``name``)."""

    def __init__(self, db: Database, vault: Vault, name: str, clock: Clock = utcnow) -> None:
        self.db, self.vault, self.name, self.clock = db, vault, name, clock

    def params(self, message: Claimed) -> Mapping[str, str]:
        """The message's parameters in clear (a verification code is kept sealed)."""
        if message.kind in SEALED_KINDS:
            return {k: self.vault.decrypt(v) for k, v in message.params.items()}
        return message.params

    async def claim(self, limit: int, urgent_only: bool = False) -> list[Claimed]:
        """Claim up to ``limit`` due messages: urgent ones first, then the rest, each
        earliest due first (one index range each, however long the queue)."""
        now = self.clock()
        async with self.db.session() as session:
            ids: list[int] = []
            for urgent in (True,) if urgent_only else (True, False):
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
                .returning(*CLAIMED_COLUMNS))).all()
        order = {message_id: i for i, message_id in enumerate(ids)}
        return sorted((Claimed(*row) for row in rows), key=lambda c: order[c.id])

    async def recipients(self, beneficiary_ids: set[int]) -> dict[int, Recipient]:
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

    async def start_sms(self, pending: Sequence[tuple[Claimed, SmsMessage]]
                        ) -> list[tuple[Claimed, SmsMessage]]:
        """Before the SMS calls of a batch, write on each row the reference the calls
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

    async def record(self, results: Sequence[tuple[Claimed, Outcome]]) -> None:
        """Write every outcome in one statement (executemany): only rows still claimed by
        this worker change, so a row the sweeper took back is not overwritten."""
        now = self.clock()
        rows = []
        for message, outcome in results:
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

    async def take_back_stale(self, older_than: timedelta,
                              limit: int) -> tuple[int, list[StaleClaim]]:
        """Stale ``sending`` claims (a killed worker's): those that never reached an SMS
        call go back to the queue at once (their count is returned); those that did are
        returned, at most ``limit``, for reconciliation. Lapsed verification codes lose
        their parameters on the way (of no use to anyone)."""
        cutoff = self.clock() - older_than
        stale = and_(OutboxMessage.state == SENDING, OutboxMessage.claimed_at < cutoff)
        async with self.db.session() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(and_(stale, OutboxMessage.sms_started_at.is_(None)))
                .values(state=QUEUED, claimed_by=None, claimed_at=None))
            rows = (await session.execute(
                select(*CLAIMED_COLUMNS, OutboxMessage.claimed_at, OutboxMessage.sms_ref,
                       OutboxMessage.sms_started_at)
                .where(and_(stale, OutboxMessage.sms_started_at.is_not(None)))
                .order_by(OutboxMessage.id).limit(limit))).all()
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
        claims = [StaleClaim(Claimed(*row[:len(CLAIMED_COLUMNS)]), row.claimed_at,
                             row.sms_ref, row.sms_started_at) for row in rows]
        return result.rowcount or 0, claims

    async def settle(self, stale: StaleClaim, started: datetime,
                     found: SentRecord | None) -> bool:
        """Write what reconciliation found (None: queue it again), if the row is still
        the stale claim that was read. False when another worker settled it first."""
        claimed = stale.message
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
                            OutboxMessage.claimed_at == stale.claimed_at))
                .values(claimed_by=None, claimed_at=None, sms_started_at=None, **values))
        return bool(result.rowcount)


async def outbox_depth(db: Database) -> list[tuple[str, str, int]]:
    """One grouped count of the outbox by state and kind (read when /metrics is scraped;
    :func:`huimin.metrics.outbox_family` turns it into the gauge)."""
    async with db.session() as session:
        result = await session.execute(
            select(OutboxMessage.state, OutboxMessage.kind, func.count())
            .group_by(OutboxMessage.state, OutboxMessage.kind))
        return [(str(s), str(k), int(n)) for s, k, n in result.all()]
