"""Import the bureau's application list (CSV or XLSX, Chinese column headers).

The file is the list staff export from the bureau's own system, or type in Excel:
one row per application. Headers are matched after dropping spaces and anything in
brackets (``月补助金额（元）`` is ``月补助金额``), with the common aliases each system
uses (``身份证号码``, ``联系电话``, ``救助项目`` …). A file without one of the required
columns is refused as a whole; otherwise every good row is saved, and every bad row
is reported with the line number the user sees in Excel or a text editor and a reason
in plain Chinese. A reason never contains an ID or phone number.

The whole file is read and checked before the first row is saved, then good rows are
saved 500 to a transaction; when the database refuses a batch, its rows are saved again
one by one, so a row that fails is reported with its line and the others still land.

A list is untrusted input, so it is bounded before and while it is read: the file's
size (``MAX_FILE_BYTES``); for XLSX, the zip's declared member sizes, their total, their
compression ratio and their number, checked before openpyxl opens it (a small file that
inflates to gigabytes is refused without inflating anything); rows are streamed
(openpyxl read-only mode), at most ``MAX_COLUMNS`` cells a row and ``MAX_ROWS`` rows a
list; only the first ``MAX_KEPT_ERRORS`` row errors are kept, the rest are counted. A
CSV file must be UTF-8 (with or without a BOM), GB18030/GBK or UTF-16 with a BOM.

Decisions:

- A 申请编号 that already appeared on an earlier line of the same file is an error
  on the later line ("申请编号重复（第N行已出现）"); the earlier line is kept. The
  number is an application's identity, so a later row silently overwriting an
  earlier one would hide a mistake in the file.
- One person (the same 身份证号) on two lines with a different 姓名, 手机号 or 乡镇 is
  an error on the later line: either would overwrite the other, and importing the same
  file again would then not be a no-op.
- An ID number stored by Excel as a number (``3.41323E+17``, or a numeric XLSX cell)
  has lost its last digits, and is reported as such rather than as a bad check digit.

Reading is not tied to this list: ``read_rows(path, spec)`` reads any list described
by a ``ListSpec`` (its columns, their aliases, which hold ID numbers and which dates),
and the row-level checks (``huimin.registry.rows``) are shared with the payout list
(``notify.payouts``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import (
    PersonalDataError,
    Vault,
    normalise_phone,
)
from huimin.registry import ALL_STAGES, PROGRAMMES
from huimin.registry.models import Application, Beneficiary, StatusChange
from huimin.registry.queries import (
    HELD,
    ApplicationRecord,
    Confirmed,
    application_values,
    held_by,
    new_person,
    save_application,
    update_application,
    update_person,
)
from huimin.registry.rows import (
    INVISIBLE,
    PROGRAMME_ALIASES,
    cell_text,
    clean_cell,
    parse_amount,
    parse_choice,
    parse_date,
    parse_id_number,
    parse_name,
)

log = logging.getLogger(__name__)
Record = TypeVar("Record")  # one checked row of a list
Progress = Callable[["ImportReport", int], Awaitable[None]]  # (report so far, total rows)

# Other names for the columns, as headers are compared (no spaces, no brackets). The
# person and programme columns are named the same way in every list the bureau exports.
ID_ALIASES: dict[str, str] = {
    "身份证号码": "身份证号", "公民身份号码": "身份证号", "身份证": "身份证号",
    "证件号码": "身份证号", "申请人身份证号": "身份证号", "申请人身份证号码": "身份证号",
}
NAME_ALIASES: dict[str, str] = {
    "申请人": "姓名", "申请人姓名": "姓名", "救助对象姓名": "姓名",
}
PROGRAMME_COLUMN_ALIASES: dict[str, str] = {
    "救助项目": "项目", "保障类别": "项目", "救助类别": "项目", "保障项目": "项目",
}
ALIASES: dict[str, str] = {
    "申请号": "申请编号", "申请单号": "申请编号", "业务编号": "申请编号", "编号": "申请编号",
    **NAME_ALIASES,
    **ID_ALIASES,
    "乡镇街道": "乡镇", "乡镇/街道": "乡镇", "所属乡镇": "乡镇",
    **PROGRAMME_COLUMN_ALIASES,
    "当前环节": "环节", "办理环节": "环节", "办理状态": "环节", "当前状态": "环节",
    "办理日期": "环节日期", "环节时间": "环节日期",
    "手机": "手机号", "手机号码": "手机号", "联系电话": "手机号", "电话": "手机号",
    "联系方式": "手机号",
    "下一步说明": "下一步", "办理提示": "下一步",
    "下次复核日期": "复核日期", "复核时间": "复核日期",
    "月补助": "月补助金额", "月保障金额": "月补助金额", "补助金额": "月补助金额",
    "月补助标准": "月补助金额", "保障金额": "月补助金额",
}


@dataclass(frozen=True)
class ListSpec:
    """The columns of one kind of list, for reading it (``read_rows``).

    ``aliases`` maps other header names (as compared: no spaces, no brackets) to a
    column. In XLSX files a number in an ``id_columns`` cell is an ID number Excel has
    already damaged, and a date serial in a ``date_columns`` cell is read as a date.
    """

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    id_columns: tuple[str, ...] = ()
    date_columns: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


REQUIRED = ("申请编号", "姓名", "身份证号", "乡镇", "项目", "环节", "环节日期")
OPTIONAL = ("手机号", "下一步", "复核日期", "月补助金额")
COLUMNS = REQUIRED + OPTIONAL
APPLICATIONS = ListSpec(required=REQUIRED, optional=OPTIONAL, aliases=ALIASES,
                        id_columns=("身份证号",), date_columns=("环节日期", "复核日期"))

STAGE_ALIASES: dict[str, str] = {
    "批准": "已批准", "审批通过": "已批准", "已通过": "已批准",
    "不批准": "未批准", "不予批准": "未批准", "未通过": "未批准",
    "撤回": "已撤回", "申请撤回": "已撤回",
}

# Limits on what one list may be (the admin UI's upload limit is the same size). A
# county's list of 100,000 rows is about 5 MB as XLSX (its sheet inflates about 10 times)
# and 13 MB as UTF-8 CSV; see bench/imports.py.
MAX_FILE_BYTES = 32 * 2**20
MAX_ROWS = 200_000  # rows of data (not counting the header and empty rows)
MAX_KEPT_ERRORS = 1_000  # row errors kept with their line; the rest are only counted
MAX_COLUMNS = 200  # cells read per row; columns further right are not ours
# An XLSX file is a zip archive. Python's zipfile (which openpyxl reads it with) never
# inflates a member past the size the archive's directory declares, so checking the
# declared sizes before openpyxl opens the file bounds what parsing can inflate.
XLSX_MAX_MEMBERS = 1_000
XLSX_MAX_MEMBER_BYTES = 400 * 2**20  # one sheet's XML (a 100,000-row list: about 50 MB)
XLSX_MAX_SHARED_STRINGS_BYTES = 100 * 2**20  # all held in memory by openpyxl
XLSX_MAX_TOTAL_BYTES = 600 * 2**20
XLSX_MAX_RATIO = 100  # inflated / compressed, for members over XLSX_RATIO_FROM bytes
XLSX_RATIO_FROM = 2**20

HEADER_SEARCH_ROWS = 10  # a title row or two above the headers is allowed

_BRACKETED = re.compile(r"[(\[【][^)\]】]*[)\]】]")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (type, encoding, missing columns)."""


class RowError(ValueError):
    """One row cannot be imported; the message is the reason, in plain Chinese."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class RowErrors:
    """Bad rows: the first MAX_KEPT_ERRORS with their line and reason, and how many more
    there were (a list of two million bad rows keeps a thousand reasons, not two
    million)."""

    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    more_errors: int = 0  # bad rows beyond the ones kept

    @property
    def failed(self) -> int:
        return len(self.errors) + self.more_errors

    def fail(self, line: int, reason: str) -> None:
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append((line, reason))
        else:
            self.more_errors += 1

    def error_lines(self) -> list[str]:
        """One line per kept bad row, for printing ("第5行：身份证号校验位不对，请核对"),
        and "另有 N 行有错" for the rest."""
        lines = [f"第{line}行：{reason}" for line, reason in sorted(self.errors)]
        if self.more_errors:
            lines.append(f"另有 {self.more_errors} 行有错（只列出前 {len(self.errors)} 行）")
        return lines


@dataclass
class ImportReport(RowErrors):
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    # Rows held back, not saved: they would move a stage backwards or overwrite a change
    # made in the staff UI, and nobody confirmed them. They are among the failed rows
    # too, with their line and why.
    held: int = 0

    @property
    def done(self) -> int:
        """Rows dealt with so far: saved (or already there) or failed."""
        return self.added + self.updated + self.unchanged + self.failed

    def summary(self) -> str:
        text = (f"新增 {self.added} 条，更新 {self.updated} 条，未变 {self.unchanged} 条，"
                f"出错 {self.failed} 行")
        if self.held:
            text += f"（其中 {self.held} 行要确认后才导入）"
        return text

    def count(self, line: int, outcome: str) -> None:
        """Count one saved row: "added", "updated", "unchanged", HELD + why, or else the
        reason it failed."""
        if outcome in ("added", "updated", "unchanged"):
            setattr(self, outcome, getattr(self, outcome) + 1)
        elif outcome.startswith(HELD):
            self.held += 1
            self.fail(line, f"{outcome.removeprefix(HELD)}，没有导入，要确认后才导入")
        else:
            self.fail(line, outcome)


@dataclass
class CheckedList(RowErrors, Generic[Record]):
    """A list read and checked (no database yet): its good rows and its bad ones."""

    good: list[tuple[int, Record]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.good) + self.failed


def check_list(rows: Iterable[tuple[int, Record | str]]) -> CheckedList[Record]:
    """Read every row of a checked list (``checked_rows``) into good records and
    errors. Raises ImportFileError for the whole file (too many rows, say) before
    anything is saved."""
    checked: CheckedList[Record] = CheckedList()
    for line, outcome in rows:
        if isinstance(outcome, str):
            checked.fail(line, outcome)
        else:
            checked.good.append((line, outcome))
    return checked


# --- reading ----------------------------------------------------------------------------

def column_name(header: str, spec: ListSpec = APPLICATIONS) -> str | None:
    """The column a header means (one of the spec's columns), or None for a column we do
    not use."""
    text = unicodedata.normalize("NFKC", INVISIBLE.sub("", header))
    text = re.sub(r"\s+", "", text)
    text = _BRACKETED.sub("", text).strip("*＊:：")
    if text in spec.columns:
        return text
    return spec.aliases.get(text)


def read_rows(path: Path, spec: ListSpec = APPLICATIONS) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {column: value}) for each non-empty row after the header.

    Values are stripped strings keyed by the spec's column names (COLUMNS for an
    application list); columns we do not use are left out. Raises ImportFileError when
    the file cannot be read or a required column is missing (before yielding anything).
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise ImportFileError("只支持 .csv 和 .xlsx 文件")
    check_size(path)
    if suffix == ".csv":
        rows = _csv_rows(path)
    else:
        check_xlsx_archive(path)
        rows = _xlsx_rows(path, spec)
    columns: dict[int, str] | None = None
    best: tuple[int, dict[int, str]] | None = None  # the likeliest header seen so far
    searched = 0
    count = 0
    for line, cells in rows:
        if not any(cells):
            continue
        if columns is not None:
            count += 1
            if count > MAX_ROWS:
                raise ImportFileError(f"名单太长：超过 {MAX_ROWS} 行。请分成几个文件，"
                                      f"每个不超过 {MAX_ROWS} 行，再分别导入")
        if columns is None:
            found = _header_columns(line, cells, spec)
            if all(name in found.values() for name in spec.required):
                columns = found
                continue
            if best is None or len(found) > len(best[1]):
                best = (line, found)
            searched += 1
            if searched >= HEADER_SEARCH_ROWS:
                break
            continue
        yield line, {name: cells[i] if i < len(cells) else "" for i, name in columns.items()}
    if columns is None:
        if best is None:
            raise ImportFileError("文件是空的，没有表头")
        line, found = best
        missing = [name for name in spec.required if name not in found.values()]
        raise ImportFileError(f"文件缺少这些列：{'、'.join(missing)}（表头应在第{line}行）")


def _header_columns(line: int, cells: list[str], spec: ListSpec) -> dict[int, str]:
    found: dict[int, str] = {}
    headers: dict[str, list[str]] = {}
    for index, header in enumerate(cells):
        name = column_name(header, spec)
        if name is not None:
            found[index] = name
            headers.setdefault(name, []).append(header)
    for name, same in headers.items():
        if len(same) > 1:
            raise ImportFileError(f"第{line}行有几列都是“{name}”：{'、'.join(same)}，"
                                  f"请只留一列")
    return found


def check_size(path: Path) -> None:
    """Refuse a file larger than MAX_FILE_BYTES (before reading any of it)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImportFileError(f"打不开文件：{path.name}") from exc
    if size > MAX_FILE_BYTES:
        raise ImportFileError(f"文件太大（{size / 2**20:.0f}MB，最大{MAX_FILE_BYTES // 2**20}MB），"
                              f"请分成几个文件再导入")


def check_xlsx_archive(path: Path) -> None:
    """Refuse an XLSX file whose zip directory declares more than a list can hold: too
    many members, a member or all of them too large once inflated, or a member that
    inflates far more than any real sheet does (a "zip bomb"). Reads only the zip's
    directory, inflates nothing."""
    too_big = (f"这个 Excel 文件解压后太大（或被压缩得不正常），不像是一份名单，没有读取。"
               f"请在 Excel 里打开它，只留名单那一页，另存为 .xlsx 后再试；"
               f"名单很长的请分成几个文件（每个不超过 {MAX_ROWS} 行）")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ImportFileError(f"打不开这个 Excel 文件：{path.name}（文件坏了，或者不是 .xlsx；"
                              f"请在 Excel 里另存为 .xlsx 后再试）") from exc
    if len(members) > XLSX_MAX_MEMBERS:
        raise ImportFileError(too_big)
    total = 0
    for member in members:
        total += member.file_size
        limit = (XLSX_MAX_SHARED_STRINGS_BYTES if member.filename.lower().endswith(
            "sharedstrings.xml") else XLSX_MAX_MEMBER_BYTES)
        ratio_too_high = (member.file_size > XLSX_RATIO_FROM and
                          member.file_size > XLSX_MAX_RATIO * max(1, member.compress_size))
        if member.file_size > limit or ratio_too_high or total > XLSX_MAX_TOTAL_BYTES:
            log.warning("refused an XLSX file: member of %d bytes (%d compressed), "
                        "%d members, %d bytes so far", member.file_size,
                        member.compress_size, len(members), total)
            raise ImportFileError(too_big)


def decode_csv(data: bytes) -> str:
    """The text of a CSV file: UTF-8 (with or without the BOM Excel writes), GB18030 (GBK,
    as Chinese Excel saves "CSV (逗号分隔)") or UTF-16 with a BOM; anything else is
    refused with a message saying how to save the file."""
    if data.startswith(b"PK\x03\x04"):
        raise ImportFileError("这其实是一个 Excel（.xlsx）文件，不是 CSV：请把文件名的结尾"
                              "改成 .xlsx，或在 Excel 里另存为 CSV 后再导入")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportFileError("这是旧版 Excel（.xls）文件，不是 CSV：请在 Excel 里另存为 "
                              ".xlsx 或“CSV UTF-8（逗号分隔）”后再导入")
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise ImportFileError("看不懂文件的编码（不是 UTF-8，也不是 GBK/GB18030）："
                              "请在 Excel 里另存为“CSV UTF-8（逗号分隔）”后再导入") from exc
    if "\x00" in text:
        raise ImportFileError("文件里有不是文字的内容，不像是 CSV 名单：请在 Excel 里另存为"
                              "“CSV UTF-8（逗号分隔）”或 .xlsx 后再导入")
    return text


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"打不开文件：{path.name}") from exc
    text = decode_csv(data)
    del data
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first and "，" not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    line = 1
    try:
        for cells in reader:
            yield line, [clean_cell(cell) for cell in cells[:MAX_COLUMNS]]
            line = reader.line_num + 1
    except csv.Error as exc:
        raise ImportFileError(f"第{line}行附近的格式不对（引号没有配对？）") from exc


# What openpyxl raises on a damaged file: a bad zip (a member shorter than its header
# says fails its CRC), broken XML (ParseError is a SyntaxError), odd values.
_DAMAGED = (OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError, KeyError,
            ValueError, TypeError, IndexError, AttributeError)


def _xlsx_rows(path: Path, spec: ListSpec) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    damaged = (f"打不开这个 Excel 文件：{path.name}（文件可能坏了；请在 Excel 里另存为 .xlsx "
               f"后再试）")
    try:
        book = load_workbook(path, read_only=True, data_only=True)
        sheet = book.worksheets[0]
    except (InvalidFileException, *_DAMAGED) as exc:
        raise ImportFileError(damaged) from exc
    try:
        sheet.reset_dimensions()  # some exporters write a wrong size; read every row
        columns: dict[int, str] = {}
        # Streamed row by row (read-only mode); never more than MAX_COLUMNS cells a row.
        rows = sheet.iter_rows(values_only=True, max_col=MAX_COLUMNS)
        line = 0
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except _DAMAGED as exc:
                raise ImportFileError(f"{damaged}（读到第{line + 1}行时出错）") from exc
            line += 1
            cells = [_cell_text(value, columns.get(i), spec) for i, value in enumerate(row)]
            if not columns and any(cells):
                # Until the header is found, guess it is this row: it decides how the
                # cells below are read (an ID number typed as a number, a date serial).
                guess = {i: name for i, cell in enumerate(cells)
                         if (name := column_name(cell, spec)) is not None}
                if all(name in guess.values() for name in spec.required):
                    columns = guess
            yield line, cells
    finally:
        book.close()


def _cell_text(value: object, column: str | None, spec: ListSpec = APPLICATIONS) -> str:
    """One XLSX cell as the text the user typed."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int | float):
        if column is not None and column in spec.id_columns:
            # Excel keeps 15 significant digits: the number has lost the ID's last ones.
            return f"{float(value):.5E}"
        if column is not None and column in spec.date_columns and 20000 <= value <= 80000:
            from openpyxl.utils.datetime import from_excel

            return from_excel(value).date().isoformat()  # a date cell without a date format
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return repr(value) if isinstance(value, float) else str(value)
    return clean_cell(str(value))


# --- checking ---------------------------------------------------------------------------

def parse_record(values: Mapping[str, str]) -> ApplicationRecord:
    """Check one row's values; raises RowError naming every problem in the row."""
    problems: list[str] = []

    def text(column: str) -> str:
        return cell_text(values, column)

    number = text("申请编号")
    if not number:
        problems.append("申请编号是空的")
    elif len(number) > 40:
        problems.append("申请编号太长（最多40个字符）")

    name = parse_name(clean_cell(values.get("姓名") or ""), problems)

    id_number = parse_id_number(text("身份证号"), problems)

    phone: str | None = None
    raw_phone = text("手机号").lstrip("'")
    if raw_phone:
        try:
            phone = normalise_phone(raw_phone)
        except PersonalDataError as exc:
            problems.append(str(exc))

    township = text("乡镇")
    if not township:
        problems.append("乡镇是空的")
    elif len(township) > 32:
        problems.append("乡镇名称太长（最多32个字）")

    programme = parse_choice(text("项目"), "项目", PROGRAMMES, PROGRAMME_ALIASES, problems)
    stage = parse_choice(text("环节"), "环节", ALL_STAGES, STAGE_ALIASES, problems)
    stage_date = parse_date(text("环节日期"), "环节日期", problems, required=True)
    recheck_due = parse_date(text("复核日期"), "复核日期", problems, required=False)
    amount = parse_amount(text("月补助金额"), problems)

    next_step = re.sub(r"\s+", " ", clean_cell(values.get("下一步") or ""))
    if len(next_step) > 200:
        problems.append("下一步太长（最多200个字）")

    if problems:
        raise RowError("；".join(problems))
    assert stage_date is not None and programme is not None and stage is not None
    return ApplicationRecord(
        number=number, name=name, id_number=id_number, phone=phone, township=township,
        programme=programme, stage=stage, stage_date=stage_date, next_step=next_step,
        recheck_due=recheck_due, monthly_amount=amount)


# --- importing --------------------------------------------------------------------------

@dataclass
class _Seen:
    """What earlier lines of the file said, to catch duplicates and contradictions."""

    numbers: dict[str, int] = field(default_factory=dict)
    people: dict[str, tuple[int, ApplicationRecord]] = field(default_factory=dict)

    def check(self, line: int, values: Mapping[str, str],
              record: ApplicationRecord | None) -> str | None:
        number = unicodedata.normalize("NFKC", clean_cell(values.get("申请编号") or ""))
        if number:
            if number in self.numbers:
                return f"申请编号重复（第{self.numbers[number]}行已出现）"
            self.numbers[number] = line
        if record is None:
            return None
        earlier = self.people.get(record.id_number)
        if earlier is None:
            self.people[record.id_number] = (line, record)
            return None
        first_line, first = earlier
        differs = [label for label, a, b in (("姓名", first.name, record.name),
                                             ("乡镇", first.township, record.township))
                   if a != b]
        if first.phone and record.phone and first.phone != record.phone:
            differs.append("手机号")
        if differs:
            return f"同一个身份证号在第{first_line}行的{'、'.join(differs)}和这一行不一样"
        return None


def checked_rows(path: Path) -> Iterator[tuple[int, ApplicationRecord | str]]:
    """Each row's line and either its record or the reason it cannot be imported
    (every check that needs no database). Raises ImportFileError for the whole file."""
    seen = _Seen()
    for line, values in read_rows(path):
        record: ApplicationRecord | None = None
        reasons: list[str] = []
        try:
            record = parse_record(values)
        except RowError as exc:
            reasons.append(exc.reason)
        conflict = seen.check(line, values, record)
        if conflict:
            reasons.insert(0, conflict)
        yield line, ("；".join(reasons) if reasons or record is None else record)


async def import_applications(db: Database, vault: Vault, path: Path,
                              source: str = "import", *, batch: int | None = None,
                              progress: Progress | None = None,
                              confirmed: Confirmed = False) -> ImportReport:
    """Import every good row of the file; bad rows are reported, not saved.

    Raises ImportFileError (and saves nothing) when the file cannot be read, lacks a
    required column or has too many rows: the whole file is read and checked before
    the first row is saved. Rows are saved ``batch`` to a transaction. A row that would
    move a stage backwards or overwrite a change made in the staff UI is held back
    (reported) unless ``confirmed`` covers it (True: every such row).
    """
    checked = await asyncio.to_thread(check_list, checked_rows(path))
    return await save_applications(db, vault, checked, source, batch=batch,
                                   progress=progress, name=path.name, confirmed=confirmed)


async def save_applications(db: Database, vault: Vault,
                            checked: CheckedList[ApplicationRecord], source: str = "import",
                            *, batch: int | None = None, progress: Progress | None = None,
                            name: str = "", confirmed: Confirmed = False) -> ImportReport:
    """Save a checked application list (``check_list(checked_rows(path))``)."""
    async def save(session: AsyncSession, record: ApplicationRecord) -> str:
        return await save_application(session, vault, record, source, confirmed)

    async def save_many(session: AsyncSession, records: Sequence[ApplicationRecord]
                        ) -> list[str]:
        return await save_application_batch(session, vault, records, source, confirmed)

    report = await save_rows(db, checked, save, batch=batch or BATCH, progress=progress,
                             conflict="保存时和别的数据冲突，请核对申请编号和身份证号",
                             save_many=save_many)
    log.info("imported %s: %s", name, report.summary())
    return report


BATCH = 500  # rows saved in one transaction


async def save_application_batch(session: AsyncSession, vault: Vault,
                                 records: Sequence[ApplicationRecord], source: str,
                                 confirmed: Confirmed = False) -> list[str]:
    """Save many applications as ``save_application`` does one by one (same outcomes,
    same rows, same status changes, the same rows held back), in a few statements: the
    people and applications the batch names are read with one query each, new rows are
    inserted together. The records are distinct application numbers, and one ID
    number's records agree on the person (``checked_rows`` sees to both). While keys
    rotate, rows are saved one by one (``save_application`` moves each row it touches
    to the current key)."""
    if vault.rotating:
        return [await save_application(session, vault, r, source, confirmed)
                for r in records]
    now = utcnow()
    hashes = [vault.lookup_hash(r.id_number) for r in records]
    apps: dict[str, Application] = {}
    for chunk in _chunks(sorted({r.number for r in records})):
        for app in (await session.scalars(
                select(Application).where(Application.number.in_(chunk)))).all():
            apps[app.number] = app
    # Rows that would move a stage backwards or overwrite a change made in the UI, and
    # are not confirmed, are held back whole (their person is not touched either).
    held = [held_by(apps.get(r.number), r, confirmed) for r in records]
    people: dict[str, Beneficiary] = {}
    for chunk in _chunks(sorted({h for h, why in zip(hashes, held, strict=True)
                                 if why is None})):
        for person in (await session.scalars(
                select(Beneficiary).where(Beneficiary.id_hash.in_(chunk)))).all():
            people[person.id_hash] = person
    # The people first (as save_application does for each record in turn) ...
    person_changed: list[bool] = []
    for record, id_hash, why in zip(records, hashes, held, strict=True):
        person = people.get(id_hash)
        changed = False
        if why is not None:
            pass
        elif person is None:
            people[id_hash] = new_person(vault, record, id_hash)
            session.add(people[id_hash])
        else:
            # a person new in this batch is "added", not "updated"
            changed = update_person(vault, person, record, now) and person.id is not None
        person_changed.append(changed)
    await session.flush()  # new people get their ids
    # ... then the applications, and a status change for each new one or new stage.
    outcomes: list[str] = []
    added: list[Application] = []
    for record, id_hash, changed_person, why in zip(records, hashes, person_changed, held,
                                                    strict=True):
        if why is not None:
            outcomes.append(why)
            continue
        values = application_values(record, people[id_hash].id)
        app = apps.get(record.number)
        if app is None:
            app = Application(number=record.number, changed_by=source[:40], **values)
            session.add(app)
            added.append(app)
            outcomes.append("added")
        elif update_application(session, app, values, source, now) or changed_person:
            outcomes.append("updated")
        else:
            outcomes.append("unchanged")
    await session.flush()  # new applications get their ids
    for app in added:
        session.add(StatusChange(application_id=app.id, from_stage=None, to_stage=app.stage,
                                 stage_date=app.stage_date, source=source))
    await session.flush()
    return outcomes


def _chunks(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


async def import_rows(db: Database, rows: Iterable[tuple[int, Record | str]],
                      save: Callable[[AsyncSession, Record], Awaitable[str]], *,
                      conflict: str, batch: int = BATCH,
                      progress: Progress | None = None) -> ImportReport:
    """Read and check every row (``checked_rows``), then save the good ones
    (``save_rows``). Raises ImportFileError before saving anything when the file as a
    whole cannot be imported."""
    checked = await asyncio.to_thread(check_list, rows)
    return await save_rows(db, checked, save, conflict=conflict, batch=batch,
                           progress=progress)


async def save_rows(db: Database, checked: CheckedList[Record],
                    save: Callable[[AsyncSession, Record], Awaitable[str]], *,
                    conflict: str, batch: int = BATCH,
                    progress: Progress | None = None,
                    save_many: Callable[[AsyncSession, Sequence[Record]],
                                        Awaitable[list[str]]] | None = None
                    ) -> ImportReport:
    """Save every good row of a checked list (``save`` gives "added", "updated",
    "unchanged" or a reason), ``batch`` rows to a transaction. When a batch fails in
    the database its rows are saved again one by one, each in its own transaction, so
    one bad row loses nothing else and is reported with its line. ``conflict`` is the
    reason given when a row keeps clashing with another write. ``save_many``, when
    given, saves a whole batch with the same outcomes as ``save`` row by row, in fewer
    round trips to the database. ``progress`` is called
    with the report so far and the number of rows, once the bad rows are counted and
    after each batch."""
    report = ImportReport()
    for line, reason in checked.errors:
        report.fail(line, reason)
    report.more_errors += checked.more_errors
    total = checked.total
    if progress is not None:
        await progress(report, total)
    for start in range(0, len(checked.good), batch):
        rows = checked.good[start:start + batch]
        outcomes = await _save_batch(db, rows, save, save_many) if len(rows) > 1 else None
        if outcomes is None:
            outcomes = [await _save_row(db, line, record, save, conflict)
                        for line, record in rows]
        for (line, _), outcome in zip(rows, outcomes, strict=True):
            report.count(line, outcome)
        if progress is not None:
            await progress(report, total)
    report.errors.sort()
    return report


async def _save_batch(db: Database, rows: Sequence[tuple[int, Record]],
                      save: Callable[[AsyncSession, Record], Awaitable[str]],
                      save_many: Callable[[AsyncSession, Sequence[Record]],
                                          Awaitable[list[str]]] | None
                      ) -> list[str] | None:
    """Save rows in one transaction: their outcomes, or None when the database refused
    the batch (it is then rolled back as a whole)."""
    try:
        async with db.session() as session:
            if save_many is not None:
                return await save_many(session, [record for _, record in rows])
            return [await save(session, record) for _, record in rows]
    except SQLAlchemyError as exc:
        # The message would quote the row's values; log the kind of failure only.
        log.info("batch of lines %d-%d: %s; saving them one by one", rows[0][0],
                 rows[-1][0], type(exc).__name__)
        return None


async def _save_row(db: Database, line: int, record: Record,
                    save: Callable[[AsyncSession, Record], Awaitable[str]],
                    conflict: str) -> str:
    """Save one row in its own transaction: its outcome, or the reason it failed."""
    for attempt in (1, 2):
        try:
            async with db.session() as session:
                return await save(session, record)
        except IntegrityError as exc:
            # Most likely another import saving the same row at the same moment: the
            # second try finds the row it saved.
            log.warning("line %d: integrity error (attempt %d): %s", line, attempt,
                        type(exc.orig).__name__)
        except SQLAlchemyError as exc:
            # The message would quote the row's values; log the kind of failure only.
            log.warning("line %d: database error: %s", line, type(exc).__name__)
            return "保存到数据库时出错，请稍后重试或联系管理员"
    return conflict
