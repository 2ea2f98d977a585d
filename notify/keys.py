"""The notifier's part of changing ``HUIMIN_SECRET_KEY`` (see :mod:`huimin.keys`): the SMS
opt-outs, kept under a phone's keyed hash, move with the phone; the verification codes
sealed in queued outbox messages are sealed again under the new key. Registered with
the core's rotation when this module is imported (the composition root does)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.db import Database
from huimin.keys import (
    Batch,
    Progress,
    TableTally,
    keep_with_phones,
    retrying,
    rotate_table,
)
from huimin.personal import PersonalDataError, Vault
from notify.models import OptOut, OutboxMessage
from notify.plan import SEALED_KINDS


class SmsOptOuts:
    """SMS opt-outs: their address is the phone's keyed hash."""

    async def held(self, session: AsyncSession) -> set[str]:
        return set((await session.scalars(
            select(OptOut.address).where(OptOut.channel == "sms"))).all())

    async def count(self, session: AsyncSession, hashes: Sequence[str]) -> int:
        return int(await session.scalar(select(func.count()).select_from(OptOut).where(
            and_(OptOut.channel == "sms", OptOut.address.in_(list(hashes))))) or 0)

    async def move(self, session: AsyncSession, phones: dict[str, str]) -> int:
        """Opt-outs under an old hash go under the new one; where the new one has
        its own already (said again since), the old row is dropped."""
        found = list((await session.execute(
            select(OptOut.id, OptOut.address).where(and_(
                OptOut.channel == "sms", OptOut.address.in_(list(phones)))))).all())
        if not found:
            return 0
        targets = {phones[row.address] for row in found}
        existing = set((await session.scalars(select(OptOut.address).where(and_(
            OptOut.channel == "sms", OptOut.address.in_(list(targets)))))).all())
        duplicates = [row.id for row in found if phones[row.address] in existing]
        moves = [{"row_id": row.id, "new": phones[row.address]} for row in found
                 if phones[row.address] not in existing]
        if duplicates:
            await session.execute(delete(OptOut).where(OptOut.id.in_(duplicates)))
        if moves:
            table = OptOut.__table__
            await session.execute(update(table).where(table.c.id == bindparam("row_id"))
                                  .values(address=bindparam("new")), moves)
        return len(found)


async def outbox_pass(db: Database, vault: Vault, tally: TableTally, *, write: bool,
                      batch: int, progress: Progress | None) -> None:
    """Seal again, under the current key, the codes of queued messages still sealed
    under the previous one."""
    sealed = sorted(SEALED_KINDS)
    async with db.session() as session:
        tally.total = int(await session.scalar(
            select(func.count()).select_from(OutboxMessage)
            .where(OutboxMessage.kind.in_(sealed))) or 0)
    table = OutboxMessage.__table__
    last = 0
    while True:
        async def one_batch(session: AsyncSession, after: int = last) -> Batch:
            query = (select(OutboxMessage.id, OutboxMessage.params)
                     .where(and_(OutboxMessage.kind.in_(sealed), OutboxMessage.id > after))
                     .order_by(OutboxMessage.id).limit(batch))
            rows = (await session.execute(query.with_for_update() if write else query)).all()
            if not rows:
                return Batch(0, after)
            done = Batch(len(rows), rows[-1].id)
            updates = []
            for row in rows:
                params = dict(row.params or {})
                try:
                    opened = {k: vault.unseal(v) for k, v in params.items()}
                except PersonalDataError:
                    done.unreadable += 1
                    continue
                if all(current for _, current in opened.values()):
                    continue
                done.stale += 1
                updates.append({"row_id": row.id, "params": {
                    k: v if current else vault.encrypt(value)
                    for (k, v), (value, current) in zip(params.items(), opened.values(),
                                                        strict=True)}})
            if write and updates:
                await session.execute(update(table).where(table.c.id == bindparam("row_id"))
                                      .values(params=bindparam("params")), updates)
            return done

        done = await retrying(db, one_batch)
        if not done.rows:
            break
        last = done.last_id
        tally.add(done)
        if progress:
            progress("outbox", tally.checked, tally.total, tally.stale)


SMS_OPT_OUTS = SmsOptOuts()
keep_with_phones(SMS_OPT_OUTS)
rotate_table("outbox", "待发验证码", outbox_pass)
