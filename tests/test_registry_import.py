"""Importing the bureau's application list: CSV and XLSX, bad rows, re-imports, privacy."""

from __future__ import annotations

import csv
import io
import re
import tracemalloc
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select, text

from huimin.db import Database
from huimin.personal import Vault, id_check_digit
from huimin.registry.importer import (
    MAX_FILE_BYTES,
    MAX_KEPT_ERRORS,
    MAX_ROWS,
    XLSX_MAX_MEMBER_BYTES,
    ImportFileError,
    ImportReport,
    RowError,
    import_applications,
    parse_record,
    read_rows,
)
from huimin.registry.models import Application, Beneficiary, StatusChange
from huimin.registry.rows import NUMERIC_ID

DEMO_FILE = Path(__file__).resolve().parents[1] / "content" / "demo" / "applications.csv"
VAULT = Vault("test-secret-key-0123456789")
HEADER = ["申请编号", "姓名", "身份证号", "手机号", "乡镇", "项目", "环节", "环节日期", "下一步",
          "复核日期", "月补助金额"]
ZHANG_ID = "34132319620817004X"
ZHANG_PHONE = "13800138000"
REGISTRY_TABLES = ("access_log", "guess_counters", "verification_codes",
                   "delegate_invitations", "bindings", "status_changes", "applications",
                   "beneficiaries")


def an_id(birth: str, sequence: int) -> str:
    first17 = f"341323{birth}{sequence:03d}"
    return first17 + id_check_digit(first17)


WANG_ID = an_id("19550312", 3)
LIU_ID = an_id("19480605", 1)
CHEN_ID = an_id("19710923", 2)


def good_rows() -> list[list[str]]:
    return [
        ["LZ-2026-0017", "张桂兰", ZHANG_ID, ZHANG_PHONE, "娄庄镇", "低保", "审核", "2026-11-20",
         "乡镇正在审核，结果出来后会在村里公示7天", "", ""],
        ["LZ-2026-0009", "王德福", WANG_ID, "13800131001", "娄庄镇", "低保", "已批准",
         "2026/10/15", "每月10日前发到一卡通", "2027年4月15日", "650.50"],
        ["YJ-2026-0031", "刘长友", LIU_ID, "", "虞姬乡", "五保", "公示", "2026年11月25日",
         "", "", ""],
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
            await conn.execute(text(f"TRUNCATE {', '.join(REGISTRY_TABLES)} "
                                    "RESTART IDENTITY CASCADE"))
    yield database
    await database.dispose()


async def count(db: Database, model: type) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def application(db: Database, number: str) -> Application:
    async with db.session() as session:
        app = await session.scalar(select(Application).where(Application.number == number))
    assert app is not None, number
    return app


async def test_a_good_csv_file_lands_every_row(db: Database, tmp_path: Path) -> None:
    report = await import_applications(db, VAULT, write_csv(tmp_path / "list.csv", good_rows()))
    assert (report.added, report.updated, report.unchanged, report.errors) == (3, 0, 0, [])
    assert report.summary() == "新增 3 条，更新 0 条，未变 0 条，出错 0 行"
    assert await count(db, Beneficiary) == 3
    assert await count(db, StatusChange) == 3  # every new application is announced
    wang = await application(db, "LZ-2026-0009")
    assert (wang.programme, wang.stage, wang.stage_date) == ("低保", "已批准", date(2026, 10, 15))
    assert wang.recheck_due == date(2027, 4, 15)
    assert Decimal(wang.monthly_amount or 0) == Decimal("650.50")
    liu = await application(db, "YJ-2026-0031")
    assert (liu.programme, liu.stage_date, liu.monthly_amount) == (
        "特困供养", date(2026, 11, 25), None)
    async with db.session() as session:
        person = await session.get(Beneficiary, liu.beneficiary_id)
    assert person is not None and person.phone_hash is None


async def test_an_xlsx_file_with_aliases_dates_and_a_title_row(db: Database,
                                                                tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["娄庄镇2026年11月救助申请名单"])
    sheet.append([" 申请编号 ", "姓名", "公民身份号码", "联系电话", "乡镇（街道）", "救助项目",
                  "当前环节", "环节日期", "下一步", "复核日期", "月补助（元）", "备注"])
    sheet.append(["LZ-2026-0017", "张桂兰", ZHANG_ID, int(ZHANG_PHONE), "娄庄镇", "最低生活保障",
                  "审核", datetime(2026, 11, 20), "乡镇正在审核", None, None, "无"])
    sheet.append([])
    sheet.append(["LZ-2026-0009", "王 德 福", WANG_ID, "138 0013 1001", "娄庄镇", "低保",
                  "已批准", datetime(2026, 10, 15), "每月10日前发放", datetime(2027, 4, 15),
                  650.5, "户主"])
    sheet.append(["HW-2026-0022", "陈秀英", CHEN_ID, None, "黄湾镇", "临时救助", "调查",
                  "2026-11-22", None, None, None, None])
    sheet["C3"].number_format = "@"
    path = tmp_path / "list.xlsx"
    book.save(path)

    assert [line for line, _ in read_rows(path)] == [3, 5, 6]
    report = await import_applications(db, VAULT, path)
    assert report.errors == []
    assert report.added == 3
    wang = await application(db, "LZ-2026-0009")
    assert (wang.stage_date, wang.recheck_due) == (date(2026, 10, 15), date(2027, 4, 15))
    assert Decimal(wang.monthly_amount or 0) == Decimal("650.50")
    zhang = await application(db, "LZ-2026-0017")
    assert zhang.programme == "低保"
    async with db.session() as session:
        people = {p.name: p for p in await session.scalars(select(Beneficiary))}
    assert set(people) == {"张桂兰", "王德福", "陈秀英"}
    assert people["张桂兰"].phone_masked == "138****8000"
    assert people["王德福"].phone_hash == VAULT.lookup_hash("13800131001")


async def test_bad_rows_are_reported_with_line_and_reason_and_good_rows_land(
        db: Database, tmp_path: Path) -> None:
    wrong_check = WANG_ID[:17] + ("0" if WANG_ID[17] != "0" else "1")
    rows = [
        good_rows()[0],                                                                # 2
        ["LZ-2026-0101", "王德福", wrong_check, "", "娄庄镇", "低保", "申请", "2026-11-01",
         "", "", ""],                                                                  # 3
        ["LZ-2026-0102", "王德福", WANG_ID, "", "娄庄镇", "低保金", "申请", "2026-11-01",
         "", "", ""],                                                                  # 4
        ["LZ-2026-0103", "王德福", WANG_ID, "", "娄庄镇", "低保", "办完了", "2026-11-01",
         "", "", ""],                                                                  # 5
        ["LZ-2026-0104", "王德福", WANG_ID, "", "娄庄镇", "低保", "申请", "11/01/2026",
         "", "", ""],                                                                  # 6
        ["LZ-2026-0105", "王德福", WANG_ID, "", "娄庄镇", "低保", "申请", "2026-11-01",
         "", "", "-100"],                                                              # 7
        ["LZ-2026-0106", "", WANG_ID, "", "娄庄镇", "低保", "申请", "2026-11-01",
         "", "", ""],                                                                  # 8
        ["LZ-2026-0017", "刘长友", LIU_ID, "", "虞姬乡", "特困供养", "申请", "2026-11-01",
         "", "", ""],                                                                  # 9
        ["LZ-2026-0107", "王德福", "3.41323E+17", "", "娄庄镇", "低保", "申请", "2026-11-01",
         "", "", ""],                                                                  # 10
        ["LZ-2026-0108", "王德福", WANG_ID, "", "娄庄镇", "低保", "申请", "2026-02-30",
         "", "", "12.345"],                                                            # 11
        good_rows()[2],                                                                # 12
    ]
    report = await import_applications(db, VAULT, write_csv(tmp_path / "bad.csv", rows))
    errors = dict(report.errors)
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert errors[3] == "身份证号校验位不对，请核对"
    assert "项目“低保金”不认识" in errors[4] and "特困供养" in errors[4]
    assert "环节“办完了”不认识" in errors[5]
    assert "环节日期“11/01/2026”看不懂" in errors[6]
    assert errors[7] == "月补助金额不能是负数"
    assert errors[8] == "姓名是空的"
    assert errors[9] == "申请编号重复（第2行已出现）"
    assert errors[10] == NUMERIC_ID
    assert "不是真实的日期" in errors[11] and "最多两位小数" in errors[11]  # every problem
    assert (report.added, report.updated, report.unchanged) == (2, 0, 0)
    assert report.summary() == "新增 2 条，更新 0 条，未变 0 条，出错 9 行"
    zhang = await application(db, "LZ-2026-0017")  # the duplicate did not overwrite it
    assert (zhang.programme, zhang.stage) == ("低保", "审核")
    await application(db, "YJ-2026-0031")
    assert await count(db, Application) == 2


async def test_an_id_number_stored_as_a_number_in_xlsx_is_a_row_error(
        db: Database, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(["LZ-2026-0009", "王德福", int(WANG_ID), "", "娄庄镇", "低保", "申请",
                  datetime(2026, 11, 1)])
    sheet.append(good_rows()[0])
    sheet.append(["LZ-2026-0010", "陈秀英", float(CHEN_ID), "", "黄湾镇", "低保", "申请",
                  datetime(2026, 11, 1)])
    path = tmp_path / "numbers.xlsx"
    book.save(path)
    report = await import_applications(db, VAULT, path)
    assert report.errors == [(2, NUMERIC_ID), (4, NUMERIC_ID)]
    assert "设为文本" in NUMERIC_ID
    assert report.added == 1


async def test_a_gb18030_csv_from_chinese_excel(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gbk.csv", good_rows(), encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    report = await import_applications(db, VAULT, path)
    assert (report.added, report.errors) == (3, [])
    zhang = await application(db, "LZ-2026-0017")
    assert zhang.township == "娄庄镇" and zhang.next_step.startswith("乡镇正在审核")


async def test_a_utf8_csv_with_a_bom(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bom.csv", good_rows(), encoding="utf-8-sig")
    report = await import_applications(db, VAULT, path)
    assert (report.added, report.errors) == (3, [])


async def test_a_missing_required_column_fails_the_whole_file(db: Database,
                                                              tmp_path: Path) -> None:
    header = [h for h in HEADER if h not in ("身份证号", "环节日期")]
    rows = [[v for h, v in zip(HEADER, row, strict=True) if h in header]
            for row in good_rows()]
    path = write_csv(tmp_path / "short.csv", rows, header=header)
    with pytest.raises(ImportFileError) as caught:
        await import_applications(db, VAULT, path)
    assert str(caught.value).startswith("文件缺少这些列：身份证号、环节日期")
    assert await count(db, Beneficiary) == 0
    assert await count(db, Application) == 0


async def test_only_csv_and_xlsx_are_accepted(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "list.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(ImportFileError, match=r"只支持 \.csv 和 \.xlsx 文件"):
        await import_applications(db, VAULT, path)


async def test_importing_the_same_file_again_changes_nothing(db: Database) -> None:
    first = await import_applications(db, VAULT, DEMO_FILE)
    changes = await count(db, StatusChange)
    assert changes == first.added
    async with db.session() as session:
        before = {a.number: a.updated_at for a in await session.scalars(select(Application))}
        people = {p.id: p.updated_at for p in await session.scalars(select(Beneficiary))}
    again = await import_applications(db, VAULT, DEMO_FILE)
    assert (again.added, again.updated, again.unchanged, again.errors) == (
        0, 0, first.added, [])
    assert await count(db, StatusChange) == changes
    async with db.session() as session:
        assert {a.number: a.updated_at
                for a in await session.scalars(select(Application))} == before
        assert {p.id: p.updated_at for p in await session.scalars(select(Beneficiary))} == people


async def test_a_changed_stage_is_recorded_as_a_status_change(db: Database,
                                                              tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", good_rows())
    await import_applications(db, VAULT, path)
    rows = good_rows()
    rows[0][6:9] = ["公示", "2026-11-28", "正在村里公示7天"]
    report = await import_applications(db, VAULT, write_csv(path, rows), source="import:test")
    assert (report.added, report.updated, report.unchanged) == (0, 1, 2)
    zhang = await application(db, "LZ-2026-0017")
    async with db.session() as session:
        changes = list(await session.scalars(
            select(StatusChange).where(StatusChange.application_id == zhang.id)
            .order_by(StatusChange.id)))
    assert [(c.from_stage, c.to_stage) for c in changes] == [(None, "审核"), ("审核", "公示")]
    assert changes[1].stage_date == date(2026, 11, 28)
    assert changes[1].source == "import:test"
    assert await count(db, StatusChange) == 4


async def test_a_change_other_than_the_stage_updates_without_a_status_change(
        db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", good_rows())
    await import_applications(db, VAULT, path)
    rows = good_rows()
    rows[1][8] = "请带一卡通到乡镇民政所核对"
    report = await import_applications(db, VAULT, write_csv(path, rows))
    assert (report.added, report.updated, report.unchanged) == (0, 1, 2)
    assert await count(db, StatusChange) == 3


async def test_no_clear_id_or_phone_is_stored(db: Database) -> None:
    await import_applications(db, VAULT, DEMO_FILE)
    async with db.session() as session:
        zhang = await session.scalar(select(Beneficiary).where(Beneficiary.name == "张桂兰"))
        everyone = list(await session.scalars(select(Beneficiary)))
    async with db.engine.connect() as conn:
        raw = [tuple(row) for row in (await conn.execute(
            text("SELECT * FROM beneficiaries"))).all()]
    assert zhang is not None
    assert VAULT.decrypt(zhang.id_encrypted) == ZHANG_ID
    assert zhang.id_masked == "3413**********004X"
    assert zhang.phone_encrypted is not None
    assert VAULT.decrypt(zhang.phone_encrypted) == ZHANG_PHONE
    assert zhang.phone_masked == "138****8000"
    clear = {VAULT.decrypt(p.id_encrypted) for p in everyone} | {
        VAULT.decrypt(p.phone_encrypted) for p in everyone if p.phone_encrypted}
    assert len(clear) > len(everyone)
    stored = " ".join(str(value) for row in raw for value in row)
    assert not [value for value in clear if value in stored]


async def test_no_reason_contains_an_id_or_phone_number(db: Database, tmp_path: Path) -> None:
    wrong_check = ZHANG_ID[:17] + "1"
    rows = [
        ["A-1", "张桂兰", wrong_check, ZHANG_PHONE, "娄庄镇", "低保", "审核", "2026-11-20",
         "", "", ""],
        ["A-2", "张桂兰", ZHANG_ID[:16], "1380013800", "娄庄镇", "低保", "审核", "2026-11-20",
         "", "", ""],
        ["A-3", "张桂兰", ZHANG_ID, ZHANG_PHONE, "娄庄镇", ZHANG_PHONE, ZHANG_ID, ZHANG_ID,
         "", ZHANG_PHONE, ZHANG_PHONE + "元"],
        ["A-4", ZHANG_ID, ZHANG_ID, ZHANG_PHONE, "娄庄镇", "低保", "审核", "2026-11-20",
         "", "", ""],
        ["A-5", "王德福", ZHANG_ID, "28001380001", "娄庄镇", "低保", "审核", "2026-11-20",
         "", "", ""],
    ]
    report = await import_applications(db, VAULT, write_csv(tmp_path / "bad.csv", rows))
    assert [line for line, _ in report.errors] == [2, 3, 4, 5, 6]
    numbers = {wrong_check, ZHANG_ID, ZHANG_ID[:16], ZHANG_PHONE, "1380013800", "28001380001"}
    for _, reason in report.errors:
        assert not [n for n in numbers if n in reason], reason
        assert not re.search(r"\d{10,}", reason), reason


def test_parse_record_accepts_the_usual_ways_of_writing_values() -> None:
    record = parse_record({
        "申请编号": " LZ-2026-0017 ", "姓名": "张  桂兰", "身份证号": ZHANG_ID.lower(),
        "手机号": "+86 138-0013-8000", "乡镇": "娄庄镇", "项目": "特困", "环节": "审批通过",
        "环节日期": "2026.11.20", "复核日期": "20270520", "月补助金额": "￥1,200.5元",
        "下一步": "  每月10日前发放  "})
    assert record.number == "LZ-2026-0017" and record.name == "张桂兰"
    assert (record.id_number, record.phone) == (ZHANG_ID, ZHANG_PHONE)
    assert (record.programme, record.stage) == ("特困供养", "已批准")
    assert (record.stage_date, record.recheck_due) == (date(2026, 11, 20), date(2027, 5, 20))
    assert record.monthly_amount == Decimal("1200.50")
    assert record.next_step == "每月10日前发放"
    for alias, programme in (("五保", "特困供养"), ("残疾人生活补贴", "困难残疾人生活补贴"),
                             ("护理补贴", "重度残疾人护理补贴"), ("孤儿", "孤儿基本生活费")):
        values = {"申请编号": "X-1", "姓名": "张桂兰", "身份证号": ZHANG_ID, "乡镇": "娄庄镇",
                  "项目": alias, "环节": "申请", "环节日期": "2026-11-20"}
        assert parse_record(values).programme == programme


def test_parse_record_reports_every_problem_of_a_row() -> None:
    with pytest.raises(RowError) as caught:
        parse_record({"申请编号": "X" * 41, "姓名": "张", "身份证号": "", "乡镇": "",
                      "项目": "", "环节": "审核", "环节日期": ""})
    assert caught.value.reason.split("；") == [
        "申请编号太长（最多40个字符）", "姓名应为2到20个字", "身份证号是空的", "乡镇是空的",
        "项目是空的", "环节日期是空的"]


def test_read_rows_counts_lines_as_an_editor_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    header = ",".join(HEADER)
    row = ",".join(good_rows()[2])
    path.write_text(f"{header}\n{row}\n\n,,,\n" + row.replace(",,,", ',"第一行\n第二行",,')
                    + f"\n{row}\n", encoding="utf-8")
    lines = [(line, values["下一步"]) for line, values in read_rows(path)]
    assert lines == [(2, ""), (5, "第一行\n第二行"), (7, "")]


def test_duplicate_columns_and_conflicting_people_are_reported(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "twice.csv", good_rows(), header=[*HEADER[:-1], "联系电话"])
    with pytest.raises(ImportFileError, match="手机号"):
        list(read_rows(path))


async def test_one_person_with_two_names_in_one_file(db: Database, tmp_path: Path) -> None:
    rows = good_rows()
    rows.append(["LZ-2026-0200", "张贵兰", ZHANG_ID, "", "娄庄镇", "临时救助", "申请",
                 "2026-11-27", "", "", ""])
    report = await import_applications(db, VAULT, write_csv(tmp_path / "list.csv", rows))
    assert report.errors == [(5, "同一个身份证号在第2行的姓名和这一行不一样")]
    again = await import_applications(db, VAULT, tmp_path / "list.csv")
    assert (again.unchanged, len(again.errors)) == (3, 1)


async def test_the_demo_registry_imports_cleanly(db: Database) -> None:
    lines = list(read_rows(DEMO_FILE))
    assert 8 <= len(lines) <= 10
    report = await import_applications(db, VAULT, DEMO_FILE)
    assert report.errors == []
    assert report.added == len(lines)
    zhang = await application(db, "LZ-2026-0017")
    assert (zhang.programme, zhang.stage, zhang.stage_date, zhang.township) == (
        "低保", "审核", date(2026, 11, 20), "娄庄镇")
    assert zhang.next_step
    async with db.session() as session:
        person = await session.get(Beneficiary, zhang.beneficiary_id)
        programmes = set(await session.scalars(select(Application.programme)))
        stages = set(await session.scalars(select(Application.stage)))
    assert person is not None and person.name == "张桂兰"
    assert person.id_hash == VAULT.lookup_hash(ZHANG_ID)
    assert person.phone_hash == VAULT.lookup_hash(ZHANG_PHONE)
    assert len(programmes) >= 4 and len(stages) >= 5


def test_a_report_summary_in_plain_chinese() -> None:
    report = ImportReport(added=3, updated=1, unchanged=5, errors=[(4, "姓名是空的"), (9, "x")])
    assert report.summary() == "新增 3 条，更新 1 条，未变 5 条，出错 2 行"
    assert report.error_lines()[0] == "第4行：姓名是空的"


# ----- hostile and oversized files -------------------------------------------------------
def xlsx_bytes(rows: list[list[str]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [HEADER, *rows]:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def with_member(xlsx: bytes, name: str, write: Callable[[Any], None],
                zip64: bool = False) -> bytes:
    """The XLSX with one member replaced or added: ``write`` streams its content."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info, source.read(info))
        with target.open(name, "w", force_zip64=zip64) as member:
            write(member)
    return out.getvalue()


def bomb(xlsx: bytes, megabytes: int) -> bytes:
    """Shared strings that inflate to ``megabytes`` MB of one repeated string (written
    in chunks: the test itself never holds them)."""
    def write(member: Any) -> None:
        member.write(b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas'
                     b'.openxmlformats.org/spreadsheetml/2006/main"><si><t>')
        chunk = b"A" * 2**20
        for _ in range(megabytes):
            member.write(chunk)
        member.write(b"</t></si></sst>")
    return with_member(xlsx, "xl/sharedStrings.xml", write, zip64=True)


def declaring(xlsx: bytes, name: str, size: int) -> bytes:
    """The XLSX with the zip directory's entry for ``name`` declaring ``size`` bytes."""
    data = bytearray(xlsx)
    entry = data.find(b"PK\x01\x02")
    while entry != -1:
        name_length = int.from_bytes(data[entry + 28:entry + 30], "little")
        if data[entry + 46:entry + 46 + name_length] == name.encode():
            data[entry + 24:entry + 28] = size.to_bytes(4, "little")
            return bytes(data)
        entry = data.find(b"PK\x01\x02", entry + 4)
    raise AssertionError(f"no {name} in the zip")


@pytest.mark.parametrize("how", ["inflates", "declares"])
async def test_an_xlsx_bomb_is_refused_before_anything_is_inflated(db: Database,
                                                                   tmp_path: Path,
                                                                   how: str) -> None:
    # Shared strings that inflate 1,000 times (20 MB from 20 KB), or that declare 1 GB.
    path = tmp_path / "名单.xlsx"
    plain = xlsx_bytes(good_rows())
    path.write_bytes(bomb(plain, 20) if how == "inflates" else declaring(
        with_member(plain, "xl/sharedStrings.xml", lambda m: m.write(b"<sst/>")),
        "xl/sharedStrings.xml", 2**30))
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ImportFileError, match="解压后太大"):
            await import_applications(db, VAULT, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20  # nothing was inflated
    assert await count(db, Application) == 0


def test_xlsx_members_are_checked_for_size_ratio_and_number(tmp_path: Path) -> None:
    good = xlsx_bytes(good_rows())
    big = tmp_path / "big.xlsx"  # a sheet declaring more than a sheet may hold
    big.write_bytes(declaring(good, "xl/worksheets/sheet1.xml", XLSX_MAX_MEMBER_BYTES + 1))
    many = tmp_path / "many.xlsx"
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        for i in range(1_001):
            target.writestr(f"xl/media/{i}.bin", b"")
    many.write_bytes(out.getvalue())
    for path in (big, many):
        with pytest.raises(ImportFileError, match="解压后太大"):
            list(read_rows(path))
    fine = tmp_path / "fine.xlsx"
    fine.write_bytes(good)
    assert len(list(read_rows(fine))) == 3


def test_a_damaged_xlsx_is_a_file_error_not_a_crash(tmp_path: Path) -> None:
    def broken(member: Any) -> None:
        member.write(b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
                     b'2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>x')
    path = tmp_path / "坏.xlsx"
    path.write_bytes(with_member(xlsx_bytes(good_rows()), "xl/worksheets/sheet1.xml", broken))
    with pytest.raises(ImportFileError, match="打不开这个 Excel 文件"):
        list(read_rows(path))


def test_a_list_with_too_many_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "名单.csv"
    good = ",".join(good_rows()[0]) + "\r\n"
    filler = "X,,,,,,,,,,\r\n" * MAX_ROWS  # one more row than the limit, with the good one
    path.write_text(",".join(HEADER) + "\r\n" + good + filler, encoding="utf-8")
    with pytest.raises(ImportFileError, match=f"名单太长：超过 {MAX_ROWS} 行"):
        for _ in read_rows(path):  # the import reads every row before saving one
            pass


async def test_many_bad_rows_keep_only_the_first_errors(db: Database, tmp_path: Path) -> None:
    bad = [["", "张三", "1", "", "娄庄镇", "低保", "审核", "2026-11-20", "", "", ""]
           for _ in range(MAX_KEPT_ERRORS + 500)]
    path = write_csv(tmp_path / "名单.csv", [*good_rows(), *bad])
    report = await import_applications(db, VAULT, path)
    assert report.added == 3 and report.failed == MAX_KEPT_ERRORS + 500
    assert len(report.errors) == MAX_KEPT_ERRORS and report.errors[0][0] == 5
    assert report.error_lines()[-1] == f"另有 500 行有错（只列出前 {MAX_KEPT_ERRORS} 行）"
    assert report.summary().endswith(f"出错 {MAX_KEPT_ERRORS + 500} 行")
    assert await count(db, Application) == 3


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "名单.csv"
    with path.open("wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ImportFileError, match="文件太大"):
        list(read_rows(path))


@pytest.mark.parametrize(("data", "message"), [
    (b"PK\x03\x04rest of a zip", "其实是一个 Excel（.xlsx）文件"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1old excel", "旧版 Excel（.xls）"),
    (b"\xff\xff\xff\x80\x80 not text", "看不懂文件的编码"),
    (",".join(HEADER).encode("utf-16-le"), "看不懂文件的编码"),  # UTF-16 without its BOM
    (b"a,b\x00c\r\n", "不是文字的内容"),
])
def test_a_csv_that_is_not_text_says_how_to_save_it(tmp_path: Path, data: bytes,
                                                    message: str) -> None:
    path = tmp_path / "名单.csv"
    path.write_bytes(data)
    with pytest.raises(ImportFileError, match=re.escape(message)):
        list(read_rows(path))


async def test_a_utf16_csv_with_a_bom_from_excel(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "名单.csv"
    out = io.StringIO()
    csv.writer(out, delimiter="\t", lineterminator="\r\n").writerows([HEADER, *good_rows()])
    path.write_bytes(out.getvalue().encode("utf-16"))  # with its BOM, as Excel saves it
    report = await import_applications(db, VAULT, path)
    assert (report.added, report.errors) == (3, [])


async def test_a_row_the_database_refuses_fails_alone_in_its_batch(db: Database,
                                                                   tmp_path: Path) -> None:
    # The database refuses one application (a trigger): its batch is rolled back and
    # saved again row by row, so that row is reported with its line and the others land.
    if not db.is_sqlite:
        pytest.skip("the refusing trigger is written for SQLite")
    async with db.session() as session:
        await session.execute(text(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON applications "
            "WHEN NEW.number = 'LZ-2026-0009' BEGIN SELECT RAISE(ABORT, 'refused'); END"))
    report = await import_applications(db, VAULT, write_csv(tmp_path / "a.csv", good_rows()),
                                       batch=2)
    assert (report.added, report.failed) == (2, 1)
    assert report.errors == [(3, "保存时和别的数据冲突，请核对申请编号和身份证号")]
    async with db.session() as session:
        numbers = set(await session.scalars(select(Application.number)))
    assert numbers == {"LZ-2026-0017", "YJ-2026-0031"}
