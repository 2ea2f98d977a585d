"""Changing ``HUIMIN_SECRET_KEY``: ``huimin keys rotate`` and ``huimin keys status``.

The secret derives two keys (``huimin.personal.Vault``): a Fernet key for the
encrypted ID and phone numbers and verification codes in the outbox, and an HMAC
key for the keyed hashes that find a record (ID and phone hashes, SMS opt-outs
and guess/phone counters keyed by those hashes, one-time code hashes).

With the new secret in ``HUIMIN_SECRET_KEY`` and the old one in
``HUIMIN_SECRET_KEY_PREVIOUS`` every process reads both and writes only the new;
``rotate`` then walks the tables in batches of rows by id, one transaction per
batch, and rewrites what is still under the previous key.

There is no progress bookkeeping: every stored value says which key it is under.
A Fernet token opens under exactly one of the keys, and a row's keyed hash is
recomputed from the value it decrypts to, so a row already under the new key is
recognised (and skipped) by looking at it. An interrupted rotation is resumed by
running it again, and rows written meanwhile by any process, under either key,
are handled the same way; ``status`` counts with the same check.

One-time code hashes (verification codes, delegate invitations) cannot be
recomputed without the code, which is never stored: they keep their hash and are
accepted under either key (``Vault.code_matches``) until they lapse (five
minutes; a day for invitations).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.clock import local_today, utcnow
from huimin.db import Database
from huimin.personal import PersonalDataError, Vault
from huimin.registry.models import (
    Beneficiary,
    DelegateInvitation,
    GuessCounter,
    VerificationCode,
)

BATCH = 500
Progress = Callable[[str, int, int, int], None]  # table, checked, total, rewritten


class PhoneKeyed(Protocol):
    """Records another package keeps under a phone number's keyed hash (the notifier's
    SMS opt-outs): they move with the phone when a beneficiary is re-keyed."""

    async def held(self, session: AsyncSession) -> set[str]:
        """Every phone hash these records hold (read once per pass)."""
        ...

    async def count(self, session: AsyncSession, hashes: Sequence[str]) -> int:
        """How many records are under ``hashes`` (a dry run's count)."""
        ...

    async def move(self, session: AsyncSession, phones: dict[str, str]) -> int:
        """Put the records under each old hash under its new one; how many moved."""
        ...


class TablePass(Protocol):
    """One pass of :func:`rotate` / :func:`key_status` over a table with sealed values."""

    async def __call__(self, db: Database, vault: Vault, tally: TableTally, *, write: bool,
                      batch: int, progress: Progress | None) -> None: ...


# Filled by the packages that own such records when they are imported (the notifier's
# notify.keys; the composition root imports it), so this core module names none of them.
_PHONE_KEYED: list[PhoneKeyed] = []
_TABLES: dict[str, TablePass] = {}
TABLE_NAMES = {"beneficiaries": "救助对象"}


def keep_with_phones(records: PhoneKeyed) -> None:
    """Register records that key rotation moves along with a phone's hash."""
    if records not in _PHONE_KEYED:
        _PHONE_KEYED.append(records)


def rotate_table(name: str, label: str, run: TablePass) -> None:
    """Register a table whose sealed values :func:`rotate` rewrites (``label``: its name
    in the command's output)."""
    _TABLES[name] = run
    TABLE_NAMES[name] = label


def _phone_keyed() -> list[PhoneKeyed]:
    """The registered records; refusing to go on without them, since moving a phone
    without its opt-outs would let reminders reach someone who said no."""
    if not _PHONE_KEYED:
        raise RotationError("no package has registered the records it keeps under a phone "
                            "hash (the composition root, huimin.wiring, imports them)")
    return _PHONE_KEYED


class RotationError(RuntimeError):
    """The rotation cannot start or cannot finish (the message says what to do)."""


# ----- one beneficiary ---------------------------------------------------------
@dataclass
class Rekeyed:
    """What moving one beneficiary to the current key changes: its columns, and the
    hashes (previous -> current) that other tables may still hold."""

    values: dict[str, str] = field(default_factory=dict)
    id_hashes: tuple[str, str] | None = None
    phone_hashes: tuple[str, str] | None = None


def rekey_values(vault: Vault, id_hash: str, id_encrypted: str, phone_hash: str | None,
                 phone_encrypted: str | None) -> Rekeyed:
    """The changes that put one beneficiary's columns under the current key (none when
    they already are). Raises PersonalDataError when neither key opens a value."""
    result = Rekeyed()
    id_number, current = vault.unseal(id_encrypted)
    if not current:
        result.values["id_encrypted"] = vault.encrypt(id_number)
    hashes = vault.lookup_hashes(id_number)
    if id_hash != hashes[0]:
        result.values["id_hash"] = hashes[0]
    if len(hashes) > 1:
        result.id_hashes = (hashes[1], hashes[0])
    if phone_encrypted:
        phone, current = vault.unseal(phone_encrypted)
        if not current:
            result.values["phone_encrypted"] = vault.encrypt(phone)
        hashes = vault.lookup_hashes(phone)
        if phone_hash != hashes[0]:
            result.values["phone_hash"] = hashes[0]
        if len(hashes) > 1:
            result.phone_hashes = (hashes[1], hashes[0])
    return result


async def rekey_beneficiary(session: AsyncSession, vault: Vault, person: Beneficiary) -> bool:
    """Move one loaded beneficiary (and its opt-outs and counters) to the current key;
    used when an import touches a row the rotation has not reached yet."""
    if not vault.rotating:
        return False
    change = rekey_values(vault, person.id_hash, person.id_encrypted, person.phone_hash,
                          person.phone_encrypted)
    for column, value in change.values.items():
        setattr(person, column, value)
    await carry_over(session, [change])
    return bool(change.values)


# ----- what is keyed by a hash elsewhere -----------------------------------------
COUNTER_PREFIXES = ("id:", "sms-last:", "code-phone:", "sms-day:")


def counter_keys(id_hash: str | None, phone_hash: str | None, now: datetime) -> list[str]:
    """guess_counters keys that embed an ID or phone hash: the status lookup's guess
    limit (``id:``), the codes-per-phone limit (``code-phone:``) and the notifier's
    per-phone SMS caps (spacing, and today's and yesterday's day counts; older ones
    no longer matter)."""
    keys = [f"id:{id_hash}"] if id_hash else []
    if phone_hash:
        today = local_today(now)
        keys += [f"sms-last:{phone_hash}", f"code-phone:{phone_hash}"]
        keys += [f"sms-day:{phone_hash}:{day.isoformat()}"
                 for day in (today, today - timedelta(days=1))]
    return keys


@dataclass
class Held:
    """Which hashes the phone-keyed records (opt-outs) and the live counters hold, read
    once per pass, so a batch queries them only for the people it concerns (usually
    none)."""

    opt_outs: set[str]
    counters: set[str]

    def concerns(self, change: Rekeyed) -> bool:
        ids, phones = change.id_hashes, change.phone_hashes
        return bool((ids and ids[0] in self.counters)
                    or (phones and (phones[0] in self.opt_outs or phones[0] in self.counters)))


async def held_hashes(db: Database, now: datetime | None = None) -> Held:
    """The phone hashes the registered records hold (SMS opt-outs), and the hashes in
    counters touched in the last two days or still locked (older ones no longer
    matter)."""
    now = now or utcnow()
    async with db.session() as session:
        opt_outs: set[str] = set()
        for records in _phone_keyed():
            opt_outs |= await records.held(session)
        keys = (await session.scalars(select(GuessCounter.key).where(or_(
            GuessCounter.window_start > now - timedelta(days=2),
            GuessCounter.locked_until > now)))).all()
    counters = set()
    for key in keys:
        prefix, _, rest = key.partition(":")
        if f"{prefix}:" in COUNTER_PREFIXES:
            counters.add(rest.split(":", 1)[0])
    return Held(opt_outs, counters)


async def carry_over(session: AsyncSession, changes: Sequence[Rekeyed],
                     now: datetime | None = None, held: Held | None = None) -> int:
    """Move SMS opt-outs and counters from previous-key hashes to current-key ones
    (only for ``changes`` that ``held`` says concern them, when given).
    Returns how many rows moved (or merged)."""
    if held is not None:
        changes = [c for c in changes if held.concerns(c)]
    renames = _counter_renames(changes, now or utcnow())
    phones = {c.phone_hashes[0]: c.phone_hashes[1] for c in changes if c.phone_hashes}
    moved = 0
    if phones:
        for records in _phone_keyed():
            moved += await records.move(session, phones)
    if renames:
        moved += await _move_counters(session, renames)
    return moved


def _counter_renames(changes: Sequence[Rekeyed], now: datetime) -> dict[str, str]:
    renames: dict[str, str] = {}
    for change in changes:
        for pair, as_id in ((change.id_hashes, True), (change.phone_hashes, False)):
            if pair is None:
                continue
            old, new = (counter_keys(h, None, now) if as_id else counter_keys(None, h, now)
                        for h in pair)
            renames.update(zip(old, new, strict=True))
    return renames


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


async def _move_counters(session: AsyncSession, renames: dict[str, str]) -> int:
    found = {row.key: row for row in (await session.scalars(
        select(GuessCounter).where(GuessCounter.key.in_(list(renames)))
        .with_for_update())).all()}
    if not found:
        return 0
    targets = {row.key: row for row in (await session.scalars(
        select(GuessCounter).where(GuessCounter.key.in_([renames[k] for k in found]))
        .with_for_update())).all()}
    for key, row in found.items():
        target = targets.get(renames[key])
        if target is None:
            await session.execute(update(GuessCounter).where(GuessCounter.key == key)
                                  .values(key=renames[key]))
            continue
        # Both exist (a process counted under the new key already): keep the stricter.
        target.window_start = _later(target.window_start, row.window_start) or utcnow()
        target.count = max(target.count, row.count)
        target.locked_until = _later(target.locked_until, row.locked_until)
        await session.delete(row)
    await session.flush()
    return len(found)


# ----- the passes --------------------------------------------------------------
@dataclass
class TableTally:
    total: int = 0
    checked: int = 0
    stale: int = 0  # under the previous key (rewritten, or to rewrite in a dry run)
    unreadable: int = 0  # opened by neither key
    carried: int = 0  # opt-outs and counters moved to the new hashes

    def add(self, batch: Batch) -> None:
        self.checked += batch.rows
        self.stale += batch.stale
        self.unreadable += batch.unreadable
        self.carried += batch.carried


@dataclass
class Batch:
    rows: int
    last_id: int
    stale: int = 0
    unreadable: int = 0
    carried: int = 0


@dataclass
class KeyReport:
    key_id: str
    previous_key_id: str | None
    tables: dict[str, TableTally] = field(default_factory=dict)
    open_codes: int = 0
    open_invitations: int = 0
    codes_lapse_at: datetime | None = None

    @property
    def stale(self) -> int:
        return sum(t.stale + t.carried for t in self.tables.values())

    @property
    def unreadable(self) -> int:
        return sum(t.unreadable for t in self.tables.values())


def _worth_retrying(db: Database, error: DBAPIError) -> bool:
    """SQLite: another process's write made the batch's snapshot stale. PostgreSQL: a
    deadlock with another transaction (an import locking the same people in another
    order) or a serialization failure; the database rolled the batch back."""
    if db.is_sqlite:
        return isinstance(error, OperationalError)
    cause = error.orig
    state = getattr(cause, "sqlstate", None) or getattr(cause.__cause__, "sqlstate", None)
    return state in {"40P01", "40001"}


async def retrying(db: Database, work: Callable[[AsyncSession], Any]) -> Any:
    """Run one batch in its own transaction, again if it was rolled back by a conflict."""
    for attempt in range(5):
        try:
            async with db.session() as session:
                return await work(session)
        except DBAPIError as error:
            if attempt == 4 or not _worth_retrying(db, error):
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def _beneficiary_pass(db: Database, vault: Vault, tally: TableTally, *, write: bool,
                            batch: int, progress: Progress | None) -> None:
    async with db.session() as session:
        tally.total = int(await session.scalar(
            select(func.count()).select_from(Beneficiary)) or 0)
    table = Beneficiary.__table__
    held = await held_hashes(db) if vault.rotating else Held(set(), set())
    last = 0
    while True:
        async def one_batch(session: AsyncSession, after: int = last) -> Batch:
            query = (select(Beneficiary.id, Beneficiary.id_hash, Beneficiary.id_encrypted,
                            Beneficiary.phone_hash, Beneficiary.phone_encrypted)
                     .where(Beneficiary.id > after).order_by(Beneficiary.id).limit(batch))
            rows = (await session.execute(query.with_for_update() if write else query)).all()
            if not rows:
                return Batch(0, after)
            done = Batch(len(rows), rows[-1].id)
            changes, updates = [], []
            for row in rows:
                try:
                    change = rekey_values(vault, row.id_hash, row.id_encrypted,
                                          row.phone_hash, row.phone_encrypted)
                except PersonalDataError:
                    done.unreadable += 1
                    continue
                changes.append(change)
                if change.values:
                    done.stale += 1
                    updates.append({"row_id": row.id, **{
                        column: change.values.get(column, getattr(row, column))
                        for column in ("id_hash", "id_encrypted", "phone_hash",
                                       "phone_encrypted")}})
            if write and updates:
                await session.execute(
                    update(table).where(table.c.id == bindparam("row_id")).values(
                        id_hash=bindparam("id_hash"), id_encrypted=bindparam("id_encrypted"),
                        phone_hash=bindparam("phone_hash"),
                        phone_encrypted=bindparam("phone_encrypted")), updates)
            done.carried = (await carry_over(session, changes, held=held) if write
                            else await _count_carry(session, changes, held))
            return done

        done = await retrying(db, one_batch)
        if not done.rows:
            break
        last = done.last_id
        tally.add(done)
        if progress:
            progress("beneficiaries", tally.checked, tally.total, tally.stale)


async def _count_carry(session: AsyncSession, changes: Sequence[Rekeyed], held: Held) -> int:
    """How many opt-outs and counters still carry a previous-key hash (dry run)."""
    changes = [c for c in changes if held.concerns(c)]
    if not changes:
        return 0
    phones = [c.phone_hashes[0] for c in changes if c.phone_hashes]
    keys = list(_counter_renames(changes, utcnow()))
    total = 0
    if phones:
        for records in _phone_keyed():
            total += await records.count(session, phones)
    if keys:
        total += int(await session.scalar(select(func.count()).select_from(GuessCounter)
                                          .where(GuessCounter.key.in_(keys))) or 0)
    return total


async def _open_codes(db: Database, report: KeyReport, issued_before: datetime) -> None:
    """Verification codes and invitations issued before ``issued_before`` that can still
    be used: their hashes stay under the previous key until they lapse."""
    now = utcnow()
    async with db.session() as session:
        for model, attr in ((VerificationCode, "open_codes"),
                            (DelegateInvitation, "open_invitations")):
            where = and_(model.used_at.is_(None), model.expires_at > now,
                         model.created_at < issued_before)
            count, lapse = (await session.execute(
                select(func.count(), func.max(model.expires_at)).where(where))).one()
            setattr(report, attr, int(count or 0))
            if lapse is not None:
                report.codes_lapse_at = _later(report.codes_lapse_at, lapse)


def _passes() -> list[tuple[str, TablePass]]:
    _phone_keyed()  # (registered together with the tables)
    return [("beneficiaries", _beneficiary_pass), *_TABLES.items()]


async def key_status(db: Database, vault: Vault, *, batch: int = 2000,
                     issued_before: datetime | None = None) -> KeyReport:
    """Count what is not yet under the current key (nothing is written)."""
    report = KeyReport(vault.key_id, vault.previous_key_id)
    for name, run in _passes():
        report.tables[name] = TableTally()
        await run(db, vault, report.tables[name], write=False, batch=batch, progress=None)
    if vault.rotating:
        await _open_codes(db, report, issued_before or utcnow())
    return report


async def rotate(db: Database, vault: Vault, *, batch: int = BATCH,
                 progress: Progress | None = None, passes: int = 3) -> KeyReport:
    """Move every encrypted value and keyed hash to the current key; resumable.

    After the pass a check counts what is left (rows written meanwhile by a process
    still running with the old key as its main one); they get another pass, up to
    ``passes``. Raises RotationError when something is left after that."""
    if not vault.rotating:
        raise RotationError("没有设置 HUIMIN_SECRET_KEY_PREVIOUS：请把旧密钥填在 "
                            "HUIMIN_SECRET_KEY_PREVIOUS，新密钥填在 HUIMIN_SECRET_KEY")
    started = utcnow()
    report = KeyReport(vault.key_id, vault.previous_key_id)
    for _ in range(passes):
        for name, run in _passes():
            tally = report.tables.setdefault(name, TableTally())
            done = TableTally()
            await run(db, vault, done, write=True, batch=batch, progress=progress)
            tally.total, tally.checked = done.total, tally.checked + done.checked
            tally.stale += done.stale
            tally.carried += done.carried
            tally.unreadable = done.unreadable
        left = await key_status(db, vault, issued_before=started)
        report.open_codes, report.open_invitations = left.open_codes, left.open_invitations
        report.codes_lapse_at = left.codes_lapse_at
        if left.unreadable:
            raise RotationError(
                f"有 {left.unreadable} 条数据用新旧两把密钥都打不开：请核对 HUIMIN_SECRET_KEY "
                "和 HUIMIN_SECRET_KEY_PREVIOUS 是否填对")
        if not left.stale:
            return report
    raise RotationError(f"检查时仍有 {left.stale} 条数据在旧密钥下：可能还有进程在用旧密钥"
                        "写入。请确认所有进程都已用新设置重启，然后再运行一次")
