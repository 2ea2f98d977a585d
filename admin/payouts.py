"""Payout lists as staff see them: checking one before it is imported (the import
itself is ``notify.payouts.import_payouts``), months with their counts and totals,
and the lines of one month with the state of each line's reminder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.lists import ListPreview, check_file, chunks, people_by_id_number
from huimin.personal import Vault, mask_id, mask_name
from huimin.registry.importer import ImportFileError
from huimin.registry.models import Beneficiary
from notify.models import OutboxMessage, PayoutLine
from notify.payouts import NOT_FOUND, checked_rows

LINES_PER_PAGE = 100
MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


@dataclass
class PayoutPreviewRow:
    line: int
    masked_name: str
    masked_id: str
    programme: str
    month: str
    amount: Decimal
    paid_on: date | None
    status: str  # "new", "changed", "same"
    note: str = ""


@dataclass
class PayoutPreview(ListPreview[PayoutPreviewRow]):
    """A payout list, checked against the registry and the lines already imported."""

    total_new: Decimal = Decimal("0.00")  # money on the new lines


async def preview_payouts(session: AsyncSession, vault: Vault, path: Path,
                          filename: str) -> PayoutPreview:
    """Check a payout list against the registry and the lines already imported."""
    preview = PayoutPreview(filename=filename)
    try:
        checked = await check_file(checked_rows, path)
    except ImportFileError as exc:
        preview.file_error = str(exc)
        return preview
    good = checked.good
    preview.errors, preview.more_errors = checked.errors, checked.more_errors
    people = await people_by_id_number(session, vault, (r.id_number for _, r in good))
    existing: dict[tuple[int, str, str], PayoutLine] = {}
    for chunk in chunks(sorted({p.id for p in people.values()})):
        for row in (await session.scalars(
                select(PayoutLine).where(PayoutLine.beneficiary_id.in_(chunk)))).all():
            existing[(row.beneficiary_id, row.programme, row.month)] = row
    for line, record in good:
        person = people.get(record.id_number)
        if person is None or person.name != record.name:
            preview.fail(line, NOT_FOUND)
            continue
        old = existing.get((person.id, record.programme, record.month))
        note = ""
        if old is None:
            status = "new"
            preview.total_new += record.amount
        elif Decimal(old.amount) == record.amount and old.paid_on == record.paid_on:
            status = "same"
        else:
            status = "changed"
            parts = []
            if Decimal(old.amount) != record.amount:
                parts.append(f"金额 {Decimal(old.amount):.2f} → {record.amount:.2f}")
            if old.paid_on != record.paid_on:
                parts.append(f"发放日期 {old.paid_on or '（空）'} → {record.paid_on or '（空）'}")
            note = "，".join(parts)
            if old.planned_at is not None:
                note += "（到账提醒已经排过，不会再发或更正）"
        preview.counts[status] += 1
        if status != "same":
            preview.rows.append(PayoutPreviewRow(
                line=line, masked_name=mask_name(record.name),
                masked_id=mask_id(record.id_number), programme=record.programme,
                month=record.month, amount=record.amount, paid_on=record.paid_on,
                status=status, note=note))
    preview.errors.sort()
    return preview


# ----- months and lines ---------------------------------------------------------------
@dataclass(frozen=True)
class MonthSummary:
    month: str
    lines: int
    total: Decimal
    planned: int
    people: int

    @property
    def not_planned(self) -> int:
        return self.lines - self.planned

    @property
    def label(self) -> str:
        year, month = self.month.split("-")
        return f"{year}年{int(month)}月"


async def months(session: AsyncSession) -> list[MonthSummary]:
    rows = (await session.execute(
        select(PayoutLine.month, func.count(), func.sum(PayoutLine.amount),
               func.count(PayoutLine.planned_at),
               func.count(func.distinct(PayoutLine.beneficiary_id)))
        .group_by(PayoutLine.month).order_by(PayoutLine.month.desc()))).all()
    return [MonthSummary(month, int(n), Decimal(total or 0).quantize(Decimal("0.01")),
                         int(planned), int(people))
            for month, n, total, planned, people in rows]


async def programme_totals(session: AsyncSession, month: str
                           ) -> list[tuple[str, int, Decimal]]:
    rows = (await session.execute(
        select(PayoutLine.programme, func.count(), func.sum(PayoutLine.amount))
        .where(PayoutLine.month == month)
        .group_by(PayoutLine.programme).order_by(PayoutLine.programme))).all()
    return [(p, int(n), Decimal(t or 0).quantize(Decimal("0.01"))) for p, n, t in rows]


@dataclass(frozen=True)
class LineRow:
    line: PayoutLine
    person: Beneficiary
    reminder: OutboxMessage | None

    @property
    def masked_name(self) -> str:
        return mask_name(self.person.name)


def reminder_key(line: PayoutLine) -> str:
    """The outbox key notify.plan gives a payout's reminder."""
    return f"payout:{line.beneficiary_id}:{line.programme}:{line.month}"


async def month_lines(session: AsyncSession, month: str, page: int,
                      per_page: int = LINES_PER_PAGE) -> tuple[list[LineRow], int]:
    condition = PayoutLine.month == month
    total = await session.scalar(select(func.count()).select_from(PayoutLine)
                                 .where(condition)) or 0
    rows = (await session.execute(
        select(PayoutLine, Beneficiary)
        .join(Beneficiary, Beneficiary.id == PayoutLine.beneficiary_id)
        .where(condition).order_by(PayoutLine.programme, PayoutLine.id)
        .offset((page - 1) * per_page).limit(per_page))).all()
    keys = [reminder_key(line) for line, _ in rows]
    reminders = {}
    if keys:
        reminders = {m.key: m for m in (await session.scalars(
            select(OutboxMessage).where(OutboxMessage.key.in_(keys)))).all()}
    return [LineRow(line, person, reminders.get(reminder_key(line)))
            for line, person in rows], total


async def latest_planned(session: AsyncSession) -> datetime | None:
    return await session.scalar(select(func.max(PayoutLine.planned_at)))


def valid_month(text: str) -> bool:
    return bool(MONTH.fullmatch(text))

