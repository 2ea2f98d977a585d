"""Importing a county's lists at scale: ``python -m bench.imports`` (``--rows N``).

Prints figures only (nothing asserts). On a fresh SQLite database (``huimin.cli
.initialise``) in a temporary folder:

1. Writes an application list of N rows (default 100,000; valid fake ID numbers,
   distinct phones, a few township and programme names, a note on every row) as
   XLSX (openpyxl, shared strings as Excel writes them) and as CSV, and prints the
   XLSX's member sizes and compression ratios against the limits in
   ``huimin.registry.importer``.
2. Times reading and checking the XLSX and the CSV (``checked_rows``); with
   ``--memory``, also their peak memory (tracemalloc, which makes it several times
   slower).
3. Times ``import_applications`` of the XLSX into the empty registry (all rows new),
   then again (nothing changes), then a version of the list with every tenth stage
   changed; then a payout list of the same people (``import_payouts``).

``--per-row`` also times the old way, one transaction per row (``import_rows`` with
``batch=1``), on a second fresh database, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import shutil
import tempfile
import time
import tracemalloc
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from huimin.personal import id_check_digit

TOWNSHIPS = ("娄庄镇", "虞姬乡", "城关镇", "大营镇", "火星乡", "长庄镇", "草沟镇", "渔沟镇")
PROGRAMMES = ("低保", "特困供养", "临时救助", "困难残疾人生活补贴", "重度残疾人护理补贴")
STAGES = ("申请", "核对", "调查", "审核", "公示", "审批", "已批准")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "桂兰德福长友秀英建国玉珍志强淑芬国华春梅金花明亮"
HEADER = ["申请编号", "姓名", "身份证号", "手机号", "乡镇", "项目", "环节", "环节日期", "下一步",
          "复核日期", "月补助金额"]
PAYOUT_HEADER = ["身份证号", "姓名", "项目", "发放月份", "金额", "发放日期"]


def fake_id(i: int) -> str:
    """A valid (GB 11643 check digit) ID number, distinct for each ``i``."""
    born = date(1940, 1, 1) + timedelta(days=i // 500)
    first17 = f"341323{born:%Y%m%d}{(i % 500) * 2:03d}"
    return first17 + id_check_digit(first17)


def name_of(i: int) -> str:
    return (SURNAMES[i % len(SURNAMES)] + GIVEN[(i // 20) % len(GIVEN)]
            + GIVEN[(i // 7) % len(GIVEN)])


def application_rows(n: int, changed_every: int = 0) -> list[list[str]]:
    rows = []
    for i in range(n):
        stage = STAGES[i % len(STAGES)]
        if changed_every and i % changed_every == 0:
            stage = STAGES[(i + 1) % len(STAGES)]
        day = date(2026, 1, 1) + timedelta(days=i % 300)
        rows.append([f"SQ-2026-{i:06d}", name_of(i), fake_id(i), f"139{i:08d}",
                     TOWNSHIPS[i % len(TOWNSHIPS)], PROGRAMMES[i % len(PROGRAMMES)], stage,
                     day.isoformat(), "乡镇正在审核，结果出来后会在村里公示7天",
                     (day + timedelta(days=180)).isoformat(), f"{500 + i % 300}.00"])
    return rows


def payout_rows(n: int) -> list[list[str]]:
    return [[fake_id(i), name_of(i), PROGRAMMES[i % len(PROGRAMMES)], "2026-11",
             f"{500 + i % 300}.00", "2026-11-10"] for i in range(n)]


def write_xlsx(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("名单")
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]],
              encoding: str = "utf-8-sig") -> Path:
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def zip_figures(path: Path) -> list[str]:
    lines = [f"{path.name}: {path.stat().st_size / 2**20:.1f} MB on disk"]
    with zipfile.ZipFile(path) as archive:
        total = 0
        for info in archive.infolist():
            total += info.file_size
            if info.file_size > 100_000:
                ratio = info.file_size / max(1, info.compress_size)
                lines.append(f"  {info.filename}: {info.file_size / 2**20:.1f} MB "
                              f"inflated, ratio {ratio:.1f}")
        lines.append(f"  {len(archive.infolist())} members, {total / 2**20:.1f} MB inflated")
    return lines


def timed_check(path: Path, memory: bool) -> tuple[float, float, int, int]:
    """Seconds, peak MB (tracemalloc, when ``memory``: it slows Python down several
    times), good rows and bad rows of reading and checking."""
    from huimin.registry.importer import checked_rows

    if memory:
        tracemalloc.start()
    start = time.perf_counter()
    good = bad = 0
    for _line, checked in checked_rows(path):
        if isinstance(checked, str):
            bad += 1
        else:
            good += 1
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if memory else 0.0
    tracemalloc.stop()
    return seconds, peak, good, bad


async def fresh_db(folder: Path, name: str) -> Any:
    from huimin.db import Database
    from huimin.settings import Settings
    from huimin.wiring.cli import initialise

    url = f"sqlite+aiosqlite:///{folder / name}"
    await initialise(Settings(database_url=url))
    return Database(url)


async def timed_import(label: str, run: Any) -> Any:
    start = time.perf_counter()
    report = await run
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s — {report.summary()}")
    return report


async def main(args: argparse.Namespace) -> None:
    from huimin.personal import Vault
    from huimin.registry.importer import (
        checked_rows,
        import_applications,
        import_rows,
    )
    from huimin.registry.queries import save_application
    from notify.payouts import import_payouts

    vault = Vault("bench-secret-key-0123456789")
    folder = Path(tempfile.mkdtemp(prefix="huimin-bench-imports-"))
    try:
        n = args.rows
        rows = application_rows(n)
        xlsx = write_xlsx(folder / "applications.xlsx", HEADER, rows)
        changed = write_xlsx(folder / "changed.xlsx", HEADER, application_rows(n, 10))
        csv_file = write_csv(folder / "applications.csv", HEADER, rows)
        gbk_file = write_csv(folder / "applications-gbk.csv", HEADER, rows, "gb18030")
        payouts = write_xlsx(folder / "payouts.xlsx", PAYOUT_HEADER, payout_rows(n))
        del rows
        for line in zip_figures(xlsx):
            print(line)
        print(f"{csv_file.name}: {csv_file.stat().st_size / 2**20:.1f} MB (UTF-8), "
              f"{gbk_file.stat().st_size / 2**20:.1f} MB (GB18030)")
        for path in (xlsx, csv_file):
            seconds, peak, good, bad = timed_check(path, args.memory)
            memory = f", peak {peak:.0f} MB (tracemalloc)" if args.memory else ""
            print(f"read and check {path.name}: {seconds:.1f} s{memory}, {good} good, "
                  f"{bad} bad")

        db = await fresh_db(folder, "bench.db")
        try:
            await timed_import(f"import {n} new applications (XLSX)",
                               import_applications(db, vault, xlsx))
            await timed_import("import the same list again",
                               import_applications(db, vault, xlsx))
            await timed_import("import with every tenth stage changed",
                               import_applications(db, vault, changed))
            await timed_import(f"import {n} payout lines (XLSX)",
                               import_payouts(db, vault, payouts))
        finally:
            await db.dispose()

        if args.per_row:
            db = await fresh_db(folder, "per-row.db")

            async def save(session: Any, record: Any) -> str:
                return await save_application(session, vault, record, "import")

            try:
                await timed_import(
                    f"import {n} new applications, one transaction per row (old way)",
                    import_rows(db, checked_rows(xlsx), save, conflict="冲突", batch=1))
            finally:
                await db.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory", action="store_true",
                        help="trace peak memory while reading (several times slower)")
    parser.add_argument("--per-row", action="store_true",
                        help="also time one transaction per row (the old way)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
