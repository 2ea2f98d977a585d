"""Importing the bureau's payout list: CSV and XLSX, bad rows, re-imports, privacy."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select, text, update

from huimin.db import Database
from huimin.personal import Vault, id_check_digit
from huimin.registry.importer import (
    ImportFileError,
    RowError,
    import_applications,
    read_rows,
)
from huimin.registry.models import Beneficiary
from huimin.registry.queries import ApplicationRecord, save_application
from huimin.registry.rows import NUMERIC_ID
from notify.models import OutboxMessage, PayoutLine
from notify.payouts import NOT_FOUND, PAYOUTS, import_payouts, parse_payout
from notify.plan import PlanReport, plan_payouts
from notify.rules import QuietHours

DEMO = Path(__file__).resolve().parents[1] / "content" / "demo"
VAULT = Vault("test-secret-key-0123456789")
HEADER = ["身份证号", "姓名", "项目", "发放月份", "金额（元）", "发放日期"]
TABLES = ("payouts", "outbox", "access_log", "guess_counters", "verification_codes",
          "delegate_invitations", "bindings", "status_changes", "applications",
          "beneficiaries")


def an_id(birth: str, sequence: int) -> str:
    first17 = f"341323{birth}{sequence:03d}"
    return first17 + id_check_digit(first17)


ZHANG_ID = "34132319620817004X"
WANG_ID = an_id("19550312", 3)
LIU_ID = an_id("19480605", 1)
STRANGER_ID = an_id("19800101", 5)
PEOPLE = (("张桂兰", ZHANG_ID, "低保"), ("王德福", WANG_ID, "低保"),
          ("刘长友", LIU_ID, "特困供养"))


def good_rows() -> list[list[str]]:
    return [
        [ZHANG_ID, "张桂兰", "低保", "2026-11", "650", "2026-11-10"],
        [WANG_ID, "王德福", "城乡低保", "2026年11月", "¥1,200.50", ""],
        [LIU_ID, "刘长友", "五保", "202611", "780.5元", "2026/11/08"],
    ]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER,
              encoding: str = "utf-8") -> Path:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *rows])
    path.write_bytes(out.getvalue().encode(encoding))
    return path


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    if not database.is_sqlite:  # PostgreSQL is shared by the run: start from empty tables
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    yield database
    await database.dispose()


@pytest.fixture
async def registry(db: Database) -> Database:
    """The three people of ``PEOPLE``, each with an approved application."""
    for number, (name, id_number, programme) in enumerate(PEOPLE, start=1):
        async with db.session() as session:
            await save_application(session, VAULT, ApplicationRecord(
                number=f"T-{number}", name=name, id_number=id_number, phone=None,
                township="娄庄镇", programme=programme, stage="已批准",
                stage_date=date(2026, 10, 1), monthly_amount=Decimal("650")), "test")
    return db


async def payouts(db: Database) -> dict[tuple[str, str, str], PayoutLine]:
    """Every payout line by (name, programme, month)."""
    async with db.session() as session:
        rows = (await session.execute(
            select(PayoutLine, Beneficiary.name)
            .join(Beneficiary, Beneficiary.id == PayoutLine.beneficiary_id))).all()
    return {(name, line.programme, line.month): line for line, name in rows}


async def count(db: Database, model: type) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_good_csv_file_lands_every_row(registry: Database, tmp_path: Path) -> None:
    report = await import_payouts(registry, VAULT, write_csv(tmp_path / "pay.csv", good_rows()))
    assert (report.added, report.updated, report.unchanged, report.errors) == (3, 0, 0, [])
    lines = await payouts(registry)
    assert set(lines) == {("张桂兰", "低保", "2026-11"), ("王德福", "低保", "2026-11"),
                          ("刘长友", "特困供养", "2026-11")}
    zhang = lines["张桂兰", "低保", "2026-11"]
    assert (Decimal(zhang.amount), zhang.paid_on) == (Decimal("650.00"), date(2026, 11, 10))
    wang = lines["王德福", "低保", "2026-11"]
    assert (Decimal(wang.amount), wang.paid_on) == (Decimal("1200.50"), None)
    liu = lines["刘长友", "特困供养", "2026-11"]
    assert (Decimal(liu.amount), liu.paid_on) == (Decimal("780.50"), date(2026, 11, 8))
    assert all(line.planned_at is None for line in lines.values())


async def test_a_gb18030_csv_with_aliases(registry: Database, tmp_path: Path) -> None:
    header = ["公民身份号码", "救助对象姓名", "救助项目", "所属月份", "实发金额", "到账日期"]
    path = write_csv(tmp_path / "gbk.csv", good_rows(), header=header, encoding="gb18030")
    report = await import_payouts(registry, VAULT, path)
    assert (report.added, report.errors) == (3, [])


async def test_an_xlsx_file_with_a_title_row_dates_and_numbers(registry: Database,
                                                                tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["娄庄镇2026年11月救助资金发放名单"])
    sheet.append(["序号", "姓名", "身份证号码", "保障类别", "发放年月", "发放金额（元）",
                  "发放日期", "收款人"])
    sheet.append([1, "张桂兰", ZHANG_ID, "低保", datetime(2026, 11, 1), 650,
                  datetime(2026, 11, 10), "张桂兰"])
    sheet.append([])
    sheet.append([2, "王 德 福", WANG_ID, "低保", 202611, 1200.5, 46336, "王德福"])
    sheet.append([3, "刘长友", LIU_ID, "特困", "2026年11月", "780.50", None, "刘长友的儿子"])
    sheet.append([4, "张桂兰", int(ZHANG_ID[:17] + "0"), "临时救助", "2026-11", 300, None, ""])
    sheet["E3"].number_format = "yyyy年m月"
    path = tmp_path / "pay.xlsx"
    book.save(path)

    assert [line for line, _ in read_rows(path, PAYOUTS)] == [3, 5, 6, 7]
    report = await import_payouts(registry, VAULT, path)
    assert report.errors == [(7, NUMERIC_ID)]
    assert report.added == 3
    lines = await payouts(registry)
    wang = lines["王德福", "低保", "2026-11"]
    assert (Decimal(wang.amount), wang.paid_on) == (Decimal("1200.50"), date(2026, 11, 10))
    zhang = lines["张桂兰", "低保", "2026-11"]
    assert zhang.paid_on == date(2026, 11, 10)
    assert ("刘长友", "特困供养", "2026-11") in lines


async def test_bad_rows_are_reported_with_line_and_reason_and_good_rows_land(
        registry: Database, tmp_path: Path) -> None:
    rows = [
        good_rows()[0],                                                        # 2
        [STRANGER_ID, "张桂兰", "低保", "2026-11", "650", ""],                 # 3
        [WANG_ID, "王德富", "低保", "2026-11", "650", ""],                     # 4
        [WANG_ID, "王德福", "低保", "11/2026", "650", ""],                     # 5
        [WANG_ID, "王德福", "低保", "2026-13", "650", ""],                     # 6
        [WANG_ID, "王德福", "低保", "2026-10", "0", ""],                       # 7
        [WANG_ID, "王德福", "低保", "2026-09", "-650", ""],                    # 8
        [WANG_ID, "王德福", "低保金", "2026-11", "650", ""],                   # 9
        [ZHANG_ID, "张桂兰", "最低生活保障", "2026年11月", "650", ""],         # 10
        [WANG_ID, "王德福", "低保", "2026-08", "650.001", ""],                 # 11
        [WANG_ID, "王德福", "低保", "", "", ""],                               # 12
        good_rows()[2],                                                        # 13
    ]
    report = await import_payouts(registry, VAULT, write_csv(tmp_path / "bad.csv", rows))
    errors = dict(report.errors)
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert errors[3] == NOT_FOUND == "没有找到这个人（身份证号和姓名对不上）"
    assert errors[4] == NOT_FOUND  # a registered ID with another name: the same reason
    assert errors[5] == "发放月份“11/2026”看不懂，请写成 2026-11 这样"
    assert errors[6] == "发放月份“2026-13”不是真实的月份"
    assert errors[7] == "金额不能是0"
    assert errors[8] == "金额不能是负数"
    assert "项目“低保金”不认识" in errors[9] and "特困供养" in errors[9]
    assert errors[10] == "同一个人同一项目同一月份重复（第2行已出现）"
    assert errors[11] == "金额最多两位小数（到分）"
    assert errors[12] == "发放月份是空的；金额是空的"
    assert (report.added, report.updated, report.unchanged) == (2, 0, 0)
    assert report.summary() == "新增 2 条，更新 0 条，未变 0 条，出错 10 行"
    lines = await payouts(registry)
    assert set(lines) == {("张桂兰", "低保", "2026-11"), ("刘长友", "特困供养", "2026-11")}
    assert Decimal(lines["张桂兰", "低保", "2026-11"].amount) == Decimal("650.00")
    for _, reason in report.errors:
        assert not [n for n in (ZHANG_ID, WANG_ID, LIU_ID, STRANGER_ID) if n in reason]
        assert not re.search(r"\d{7,}", reason), reason


async def test_a_duplicate_is_found_even_when_the_earlier_line_is_bad(
        registry: Database, tmp_path: Path) -> None:
    rows = [[WANG_ID, "王德福", "低保", "2026-11", "65O", ""],
            [WANG_ID, "王德福", "低保", "2026/11", "650", ""]]
    report = await import_payouts(registry, VAULT, write_csv(tmp_path / "dup.csv", rows))
    assert report.errors == [(2, "金额“65O”不是数字"),
                             (3, "同一个人同一项目同一月份重复（第2行已出现）")]
    assert await count(registry, PayoutLine) == 0


async def test_no_reason_contains_an_id_or_phone_number(registry: Database,
                                                        tmp_path: Path) -> None:
    phone = "13800138000"
    rows = [
        [ZHANG_ID[:17] + "1", "张桂兰", "低保", "2026-11", "650", ""],
        [ZHANG_ID, ZHANG_ID, "低保", "2026-11", "650", ""],
        [ZHANG_ID, "张桂兰", ZHANG_ID, ZHANG_ID, phone + "元", phone],
        [STRANGER_ID, "张桂兰", phone, "2026-11", "650", ""],
    ]
    report = await import_payouts(registry, VAULT, write_csv(tmp_path / "bad.csv", rows))
    assert [line for line, _ in report.errors] == [2, 3, 4, 5]
    for _, reason in report.errors:
        assert ZHANG_ID not in reason and STRANGER_ID not in reason and phone not in reason
        assert not re.search(r"\d{7,}", reason), reason


async def test_importing_the_same_file_again_changes_nothing(registry: Database,
                                                             tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pay.csv", good_rows())
    await import_payouts(registry, VAULT, path)
    before = {key: (line.id, line.amount, line.paid_on, line.imported_at)
              for key, line in (await payouts(registry)).items()}
    again = await import_payouts(registry, VAULT, path)
    assert (again.added, again.updated, again.unchanged, again.errors) == (0, 0, 3, [])
    assert {key: (line.id, line.amount, line.paid_on, line.imported_at)
            for key, line in (await payouts(registry)).items()} == before


async def test_a_changed_amount_updates_and_a_sent_reminder_stays_sent(
        registry: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pay.csv", good_rows()[:2])
    await import_payouts(registry, VAULT, path)
    planned = datetime(2026, 11, 12, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
    zhang_id = (await payouts(registry))["张桂兰", "低保", "2026-11"].id
    async with registry.session() as session:  # 张桂兰's reminder has gone out
        await session.execute(update(PayoutLine).where(PayoutLine.id == zhang_id)
                              .values(planned_at=planned))
    rows = good_rows()
    rows[0][4] = "700"
    rows[1][4] = "1250"
    changed = await import_payouts(registry, VAULT, write_csv(path, rows))
    assert (changed.added, changed.updated, changed.unchanged, changed.errors) == (1, 2, 0, [])
    lines = await payouts(registry)
    zhang = lines["张桂兰", "低保", "2026-11"]
    assert (zhang.id, Decimal(zhang.amount)) == (zhang_id, Decimal("700.00"))
    assert zhang.planned_at is not None and zhang.planned_at.replace(tzinfo=UTC) == planned
    wang = lines["王德福", "低保", "2026-11"]
    assert (Decimal(wang.amount), wang.planned_at) == (Decimal("1250.00"), None)
    assert await count(registry, OutboxMessage) == 0  # the import itself records nothing
    report = PlanReport()
    await plan_payouts(registry, planned, QuietHours(), report)
    async with registry.session() as session:
        messages = list(await session.scalars(select(OutboxMessage)))
    # 王德福 is told the new amount; 张桂兰 is not told again.
    assert sorted((m.beneficiary_id, m.params["amount"]) for m in messages) == sorted([
        (wang.beneficiary_id, "1250.00"), (lines["刘长友", "特困供养", "2026-11"].beneficiary_id,
                                           "780.50")])


async def test_a_changed_paid_on_updates(registry: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pay.csv", good_rows())
    await import_payouts(registry, VAULT, path)
    rows = good_rows()
    rows[1][5] = "2026-11-12"
    report = await import_payouts(registry, VAULT, write_csv(path, rows))
    assert (report.updated, report.unchanged) == (1, 2)
    assert (await payouts(registry))["王德福", "低保", "2026-11"].paid_on == date(2026, 11, 12)


async def test_a_missing_required_column_fails_the_whole_file(registry: Database,
                                                              tmp_path: Path) -> None:
    header = ["身份证号", "姓名", "项目", "金额"]
    rows = [[r[0], r[1], r[2], r[4]] for r in good_rows()]
    with pytest.raises(ImportFileError) as caught:
        await import_payouts(registry, VAULT, write_csv(tmp_path / "short.csv", rows, header))
    assert str(caught.value).startswith("文件缺少这些列：发放月份")
    assert await count(registry, PayoutLine) == 0


def test_a_month_can_be_written_the_usual_ways() -> None:
    base = {"身份证号": ZHANG_ID, "姓名": "张桂兰", "项目": "低保", "金额": "650"}
    for written in ("2026-11", "2026年11月", "202611", "2026/11", "2026.11", "2026-11-01",
                    "2026年11月份", "2026 年 11 月", "２０２６－１１", "2026-11-01 00:00:00"):
        assert parse_payout({**base, "发放月份": written}).month == "2026-11", written
    assert parse_payout({**base, "发放月份": "2027-1"}).month == "2027-01"
    for wrong in ("2026.1", "11/2026", "2026-00", "2026", "1月", "1890-11"):
        with pytest.raises(RowError, match="发放月份"):
            parse_payout({**base, "发放月份": wrong})


async def test_the_demo_payouts_import_cleanly_after_the_demo_applications(
        db: Database) -> None:
    applications = await import_applications(db, VAULT, DEMO / "applications.csv")
    assert applications.errors == []
    approved = {(values["姓名"], values["项目"]) for _, values in read_rows(
        DEMO / "applications.csv") if values["环节"] == "已批准" and values["月补助金额"]}
    report = await import_payouts(db, VAULT, DEMO / "payouts.csv")
    assert report.errors == []
    assert report.added == len(approved) >= 3
    lines = await payouts(db)
    assert {(name, programme) for name, programme, _ in lines} == approved
    assert {month for _, _, month in lines} == {"2026-11"}
    again = await import_payouts(db, VAULT, DEMO / "payouts.csv")
    assert (again.added, again.updated, again.unchanged, again.errors) == (0, 0, report.added, [])
