"""Import the bureau's payout list (CSV or XLSX, Chinese column headers).

One row per payment: who (身份证号 and 姓名), which programme (项目), for which month
(发放月份), how much (金额, in yuan) and, optionally, the day it was paid (发放日期).
The file is read like the application list (``huimin.registry.importer``): headers
with aliases, UTF-8 or GB18030 CSV, XLSX (with the same limits on size, rows and kept
errors), a title row above the headers allowed, the whole file checked before anything
is saved, good rows saved 500 to a transaction (one by one when a batch fails), every
bad row reported with its line number and a reason in plain Chinese that never
contains an ID or phone number. Each saved row is a ``PayoutLine``; the planner
(``notify.plan``) later tells the person the money arrived and sets ``planned_at``.

Decisions:

- The person must already be in the registry: found by the keyed hash of the ID
  number, and the name must be the one registered. Either not matching is the same
  error ("没有找到这个人（身份证号和姓名对不上）"), so the report does not tell which
  ID numbers are registered. A payout list names the recipient's own 姓名; a 收款人 or
  户名 column (a guardian's bank card, say) is not read.
- 发放月份 may be written ``2026-11``, ``2026年11月``, ``202611``, ``2026/11``,
  ``2026.11`` or as a date (an XLSX date cell, ``2026-11-01``): a date names its
  month. ``2026.1`` is refused: it is what Excel makes of the number 2026.10.
- 金额 must be more than 0, to the fen at most.
- The same person, programme and month imported again with the same amount and
  发放日期 is unchanged; with a different amount or 发放日期 the line is updated.
  When the reminder was already planned (``planned_at`` set) it is left as it is: the
  message with the old amount has gone out, and no correction is recorded or sent.
  When it was not yet planned, the reminder will carry the new amount.
- The same person, programme and month twice in one file is an error on the later
  line ("…重复（第N行已出现）"); the earlier line is kept. This is checked before the
  registry is asked, and also when the earlier line had another problem.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import Vault
from huimin.registry import PROGRAMMES
from huimin.registry.importer import (
    BATCH,
    ID_ALIASES,
    NAME_ALIASES,
    PROGRAMME_COLUMN_ALIASES,
    CheckedList,
    ImportReport,
    ListSpec,
    Progress,
    RowError,
    check_list,
    read_rows,
    save_rows,
)
from huimin.registry.queries import find_beneficiary
from huimin.registry.rows import (
    PROGRAMME_ALIASES,
    cell_text,
    clean_cell,
    parse_amount,
    parse_choice,
    parse_date,
    parse_id_number,
    parse_name,
    quoted,
)
from notify.models import PayoutLine

log = logging.getLogger(__name__)

REQUIRED = ("身份证号", "姓名", "项目", "发放月份", "金额")
OPTIONAL = ("发放日期",)
ALIASES: dict[str, str] = {
    **ID_ALIASES,
    "救助对象身份证号": "身份证号", "保障对象身份证号": "身份证号",
    **NAME_ALIASES,
    "救助对象": "姓名", "保障对象": "姓名", "保障对象姓名": "姓名",
    **PROGRAMME_COLUMN_ALIASES,
    "发放项目": "项目", "补助项目": "项目", "资金项目": "项目", "资金类别": "项目",
    "月份": "发放月份", "发放月": "发放月份", "发放年月": "发放月份", "所属月份": "发放月份",
    "年月": "发放月份", "资金月份": "发放月份", "补助月份": "发放月份",
    "发放金额": "金额", "实发金额": "金额", "补助金额": "金额", "月补助金额": "金额",
    "保障金额": "金额", "月保障金额": "金额",
    "到账日期": "发放日期", "发放时间": "发放日期", "到账时间": "发放日期",
}
PAYOUTS = ListSpec(required=REQUIRED, optional=OPTIONAL, aliases=ALIASES,
                   id_columns=("身份证号",), date_columns=("发放月份", "发放日期"))

NOT_FOUND = "没有找到这个人（身份证号和姓名对不上）"

_MONTH = re.compile(r"(\d{4})\s*(?:[-/年]\s*(\d{1,2})|\.\s*(\d{2}))\s*(?:月份?)?")
_COMPACT_MONTH = re.compile(r"(\d{4})(\d{2})")


@dataclass(frozen=True, slots=True)
class PayoutRecord:
    """One payout row, checked."""

    name: str
    id_number: str
    programme: str
    month: str  # "2026-11"
    amount: Decimal
    paid_on: date | None = None


def parse_payout(values: Mapping[str, str]) -> PayoutRecord:
    """Check one row's values; raises RowError naming every problem in the row."""
    problems: list[str] = []
    id_number = parse_id_number(cell_text(values, "身份证号"), problems)
    name = parse_name(clean_cell(values.get("姓名") or ""), problems)
    programme = parse_choice(cell_text(values, "项目"), "项目", PROGRAMMES, PROGRAMME_ALIASES,
                             problems)
    month = _month(cell_text(values, "发放月份"), problems)
    amount = parse_amount(cell_text(values, "金额"), problems, "金额", required=True,
                          positive=True)
    paid_on = parse_date(cell_text(values, "发放日期"), "发放日期", problems, required=False)
    if problems:
        raise RowError("；".join(problems))
    assert programme is not None and month is not None and amount is not None
    return PayoutRecord(name=name, id_number=id_number, programme=programme, month=month,
                        amount=amount, paid_on=paid_on)


def _month(value: str, problems: list[str]) -> str | None:
    """"2026-11" for the usual ways of writing a month, or None and a problem."""
    if not value:
        problems.append("发放月份是空的")
        return None
    match = _MONTH.fullmatch(value) or _COMPACT_MONTH.fullmatch(value)
    if match:
        year, month = int(match[1]), int(match[2] or match[3])
    else:
        day = parse_date(value, "发放月份", [], required=True)  # a whole date names its month
        if day is None:
            problems.append(f"发放月份“{quoted(value)}”看不懂，请写成 2026-11 这样")
            return None
        year, month = day.year, day.month
    if not 1 <= month <= 12:
        problems.append(f"发放月份“{quoted(value)}”不是真实的月份")
        return None
    if not 1990 <= year <= 2100:
        problems.append(f"发放月份“{quoted(value)}”看不懂，请写成 2026-11 这样")
        return None
    return f"{year:04d}-{month:02d}"


def _key(values: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(ID number, programme, month) when all three can be read, for finding duplicates."""
    scratch: list[str] = []
    id_number = parse_id_number(cell_text(values, "身份证号"), scratch)
    programme = parse_choice(cell_text(values, "项目"), "项目", PROGRAMMES, PROGRAMME_ALIASES,
                             scratch)
    month = _month(cell_text(values, "发放月份"), scratch)
    if id_number and programme and month:
        return id_number, programme, month
    return None


def checked_rows(path: Path) -> Iterator[tuple[int, PayoutRecord | str]]:
    """Each row's line and either its record or the reason it cannot be imported
    (every check that needs no database). Raises ImportFileError for the whole file."""
    seen: dict[tuple[str, str, str], int] = {}
    for line, values in read_rows(path, PAYOUTS):
        reasons: list[str] = []
        key = _key(values)
        if key is not None:
            if key in seen:
                reasons.append(f"同一个人同一项目同一月份重复（第{seen[key]}行已出现）")
            else:
                seen[key] = line
        record: PayoutRecord | None = None
        try:
            record = parse_payout(values)
        except RowError as exc:
            reasons.append(exc.reason)
        yield line, ("；".join(reasons) if reasons or record is None else record)


async def import_payouts(db: Database, vault: Vault, path: Path, *,
                         batch: int | None = None,
                         progress: Progress | None = None) -> ImportReport:
    """Import every good row of a payout list; bad rows are reported, not saved.

    Raises ImportFileError (and saves nothing) when the file cannot be read, lacks a
    required column or has too many rows: the whole file is read and checked before
    the first row is saved. Rows are saved ``batch`` to a transaction.
    """
    checked = await asyncio.to_thread(check_list, checked_rows(path))
    return await save_payouts(db, vault, checked, batch=batch, progress=progress,
                              name=path.name)


async def save_payouts(db: Database, vault: Vault, checked: CheckedList[PayoutRecord], *,
                       batch: int | None = None, progress: Progress | None = None,
                       name: str = "") -> ImportReport:
    """Save a checked payout list (``check_list(checked_rows(path))``)."""
    async def save(session: AsyncSession, record: PayoutRecord) -> str:
        return await save_payout(session, vault.lookup_hashes(record.id_number), record)

    report = await save_rows(db, checked, save, batch=batch or BATCH, progress=progress,
                             conflict="保存时和别的数据冲突，请稍后重试")
    log.info("imported payouts %s: %s", name, report.summary())
    return report


async def save_payout(session: AsyncSession, id_hash: str | Sequence[str],
                      record: PayoutRecord) -> str:
    """Insert or update one payout line: "added", "updated", "unchanged", or NOT_FOUND
    when no registered person has this ID number (by its keyed hash) and name."""
    person = await find_beneficiary(session, id_hash, record.name)
    if person is None:
        return NOT_FOUND
    existing = await session.scalar(select(PayoutLine).where(and_(
        PayoutLine.beneficiary_id == person.id, PayoutLine.programme == record.programme,
        PayoutLine.month == record.month)))
    if existing is None:
        session.add(PayoutLine(beneficiary_id=person.id, programme=record.programme,
                               month=record.month, amount=record.amount,
                               paid_on=record.paid_on))
        await session.flush()
        return "added"
    if Decimal(existing.amount) == record.amount and existing.paid_on == record.paid_on:
        return "unchanged"
    # planned_at stays as it is: a reminder already sent is not sent or corrected again.
    existing.amount = record.amount
    existing.paid_on = record.paid_on
    existing.imported_at = utcnow()
    return "updated"
