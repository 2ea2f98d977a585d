"""An import never silently undoes a caseworker's change (issue 11, item 11).

A stage set to 公示 in the staff UI went back to 审核 when an older list was imported
(another row of it edited), and an SMS announced the step backwards. Now a row that
would move a stage backwards, or overwrite what staff set in the UI with a list that
is not newer, is held back and reported (``ImportReport.held``) unless confirmed, and
announces nothing; confirmed, it is saved and announced like any change. Both ways of
saving (a batch, and row by row) behave the same."""

from __future__ import annotations

from datetime import date
from datetime import time as clock
from pathlib import Path

import pytest
from sqlalchemy import select

from admin.registry import StageForm, change_stage
from huimin.db import Database
from huimin.registry.importer import import_applications
from huimin.registry.models import Application, StatusChange
from notify.models import OutboxMessage
from notify.plan import plan
from notify.rules import QuietHours
from tests.test_cli import huimin
from tests.test_registry_import import VAULT, application, db, good_rows, write_csv

__all__ = ["db"]  # the fixture, shared with tests/test_registry_import.py
NEVER_QUIET = QuietHours(start=clock(0, 0), end=clock(0, 0))
BATCHES = pytest.mark.parametrize("batch", [None, 1], ids=["batched", "row-by-row"])


async def set_in_ui(db: Database, number: str, stage: str, day: date,
                    next_step: str = "") -> None:
    """What the application page's stage form does."""
    async with db.session() as session:
        app = await session.scalar(select(Application).where(Application.number == number))
        assert app is not None
        await change_stage(session, app, StageForm(stage, day, next_step, app.recheck_due),
                           "case")


async def changes_of(db: Database, number: str) -> list[tuple[str | None, str, str]]:
    app = await application(db, number)
    async with db.session() as session:
        rows = await session.scalars(select(StatusChange).where(
            StatusChange.application_id == app.id).order_by(StatusChange.id))
        return [(c.from_stage, c.to_stage, c.source) for c in rows]


@BATCHES
async def test_an_older_list_does_not_undo_a_stage_set_in_the_ui(
        db: Database, tmp_path: Path, batch: int | None) -> None:
    older = write_csv(tmp_path / "older.csv", good_rows())
    await import_applications(db, VAULT, older, batch=batch)
    await set_in_ui(db, "LZ-2026-0017", "公示", date(2026, 11, 28), "在村里公示7天")
    rows = good_rows()
    rows[1][8] = "请带一卡通到乡镇民政所核对"  # another row edited in the old list
    report = await import_applications(db, VAULT, write_csv(older, rows), batch=batch)
    assert (report.added, report.updated, report.unchanged, report.held) == (0, 1, 1, 1)
    assert report.failed == 1
    (line,) = report.error_lines()
    assert line.startswith("第2行：环节会从“公示”退回“审核”")
    assert "经办人员 case 在系统里改的" in line and "要确认后才导入" in line
    zhang = await application(db, "LZ-2026-0017")
    assert (zhang.stage, zhang.next_step, zhang.changed_by) == ("公示", "在村里公示7天",
                                                                "staff:case")
    assert await changes_of(db, "LZ-2026-0017") == [(None, "审核", "import"),
                                                    ("审核", "公示", "staff:case")]
    assert (await application(db, "LZ-2026-0009")).next_step == "请带一卡通到乡镇民政所核对"
    # the notifier announces the caseworker's 公示, and no step back to 审核
    report = await plan(db, quiet=NEVER_QUIET)
    async with db.session() as session:
        stages = [m.params["stage"] for m in await session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "status_change", OutboxMessage.beneficiary_id ==
            zhang.beneficiary_id))]
    assert "公示" in stages and "审核" not in stages


@BATCHES
async def test_a_confirmed_row_is_saved_and_announced(db: Database, tmp_path: Path,
                                                      batch: int | None) -> None:
    older = write_csv(tmp_path / "older.csv", good_rows())
    await import_applications(db, VAULT, older, batch=batch)
    await set_in_ui(db, "LZ-2026-0017", "公示", date(2026, 11, 28))
    # confirmed while it was at another stage: someone changed it since, still held
    stale = await import_applications(db, VAULT, older, batch=batch,
                                      confirmed={"LZ-2026-0017": "调查"})
    assert stale.held == 1 and (await application(db, "LZ-2026-0017")).stage == "公示"
    report = await import_applications(db, VAULT, older, batch=batch, source="import:x",
                                       confirmed={"LZ-2026-0017": "公示"})
    assert (report.updated, report.held, report.failed) == (1, 0, 0)
    zhang = await application(db, "LZ-2026-0017")
    assert (zhang.stage, zhang.changed_by) == ("审核", "import:x")
    assert (await changes_of(db, "LZ-2026-0017"))[-1] == ("公示", "审核", "import:x")


@BATCHES
async def test_a_step_backwards_between_two_imports_is_held_too(
        db: Database, tmp_path: Path, batch: int | None) -> None:
    rows = good_rows()
    rows[0][6:8] = ["审批", "2026-11-29"]
    await import_applications(db, VAULT, write_csv(tmp_path / "new.csv", rows), batch=batch)
    report = await import_applications(db, VAULT, write_csv(tmp_path / "old.csv",
                                                            good_rows()), batch=batch)
    assert report.held == 1 and "环节会从“审批”退回“审核”" in report.error_lines()[0]
    assert "经办人员" not in report.error_lines()[0]
    assert (await application(db, "LZ-2026-0017")).stage == "审批"
    # an outcome after the last step, and from one outcome to another, are not backwards
    rows[0][6:8] = ["已批准", "2026-11-30"]
    await import_applications(db, VAULT, write_csv(tmp_path / "new.csv", rows), batch=batch)
    rows[0][6:8] = ["已撤回", "2026-12-01"]
    report = await import_applications(db, VAULT, write_csv(tmp_path / "new.csv", rows),
                                       batch=batch)
    assert report.held == 0 and (await application(db, "LZ-2026-0017")).stage == "已撤回"


@BATCHES
async def test_a_ui_change_gives_way_only_to_a_newer_list(db: Database, tmp_path: Path,
                                                          batch: int | None) -> None:
    await import_applications(db, VAULT, write_csv(tmp_path / "a.csv", good_rows()),
                              batch=batch)
    await set_in_ui(db, "LZ-2026-0017", "审核", date(2026, 11, 20), "请补交收入证明")
    # the same stage and date with the list's old note: held (the UI note is later)
    report = await import_applications(db, VAULT, write_csv(tmp_path / "a.csv", good_rows()),
                                       batch=batch)
    assert report.held == 1
    assert "会改掉经办人员 case 在系统里改过的下一步" in report.error_lines()[0]
    assert (await application(db, "LZ-2026-0017")).next_step == "请补交收入证明"
    # a list whose stage date is later than the UI's is newer news: saved as usual
    rows = good_rows()
    rows[0][6:9] = ["公示", "2026-11-27", "正在村里公示7天"]
    report = await import_applications(db, VAULT, write_csv(tmp_path / "b.csv", rows),
                                       batch=batch)
    assert (report.updated, report.held) == (1, 0)
    zhang = await application(db, "LZ-2026-0017")
    assert (zhang.stage, zhang.next_step, zhang.changed_by) == ("公示", "正在村里公示7天",
                                                                "import")


def test_the_cli_reports_held_rows_and_imports_them_with_overwrite(
        database_url: str, tmp_path: Path) -> None:
    env = {"HUIMIN_SECRET_KEY": VAULT_SECRET}
    rows = good_rows()
    rows[0][6:8] = ["公示", "2026-11-28"]
    newer = write_csv(tmp_path / "newer.csv", rows)
    older = write_csv(tmp_path / "older.csv", good_rows())
    assert huimin("import", "applications", str(newer), database_url=database_url,
                  extra_env=env).returncode == 0
    held = huimin("import", "applications", str(older), database_url=database_url,
                  extra_env=env)
    assert held.returncode == 1, held.stdout + held.stderr
    assert "第2行：环节会从“公示”退回“审核”" in held.stdout
    assert "其中 1 行要确认后才导入" in held.stdout and "--overwrite" in held.stdout
    again = huimin("import", "applications", str(older), "--overwrite",
                   database_url=database_url, extra_env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "更新 1 条" in again.stdout and "--overwrite" not in again.stdout


VAULT_SECRET = "test-secret-key-0123456789"
