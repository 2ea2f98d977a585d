"""Confirmed list imports run as background jobs, with their state in the database.

Importing a county's list takes longer than a proxy waits for an answer, so 确认导入
only records a job (``import_jobs``) and starts it in the admin process; the browser is
sent to the job's page, which shows its progress and refreshes itself until it is done.
Every admin process reads the same row, so a reload, or another process behind the
same proxy, shows the same job.

A job reads and checks the whole file (in a thread), then saves it 500 rows to a
transaction (``huimin.registry.importer.save_rows``), writing its progress after each
batch and a heartbeat every few seconds. A job whose heartbeat has stopped (its process
was stopped or killed) is shown as interrupted, never as running for ever; a process
that stops cleanly marks its own jobs interrupted at once. An interrupted job can be
started again from its page: importing a list again changes nothing that already
landed, so it simply runs the whole list again. The uploaded file is kept (in the
upload folder) until the job is finished or failed; when it has gone (uploads are
deleted after an hour), the page asks for the file to be uploaded again.

When a job ends its result is written to the audit log, as the member of staff who
confirmed it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import JSON, Index, Integer, String, and_, or_, update
from sqlalchemy.orm import Mapped, mapped_column

from admin.audit import Actor, record
from admin.uploads import Upload, UploadStore
from huimin.clock import utcnow
from huimin.db import AwareDateTime, Base, Database
from huimin.personal import Vault
from huimin.registry import importer
from huimin.registry.importer import CheckedList, ImportFileError, ImportReport, check_list
from notify import payouts

log = logging.getLogger(__name__)

APPLICATIONS = "applications"
PAYOUTS = "payouts"
KINDS = (APPLICATIONS, PAYOUTS)
# States. A job is "running" while it is queued, checking or saving.
QUEUED, CHECKING, SAVING = "queued", "checking", "saving"
FINISHED, FAILED, INTERRUPTED = "finished", "failed", "interrupted"
RUNNING = (QUEUED, CHECKING, SAVING)
STATE_WORDS = {
    QUEUED: "等待开始", CHECKING: "正在读取和检查文件", SAVING: "正在保存",
    FINISHED: "导入完成", FAILED: "没有导入完", INTERRUPTED: "导入被中断了",
}
HEARTBEAT_SECONDS = 5.0
STALE_AFTER = timedelta(seconds=60)  # no heartbeat for this long: the process is gone
FILE_GONE = ("上传的文件已经不在了（上传超过1小时会自动删除）。请重新上传同一个文件，"
             "已经导入的行不会重复。")
SYSTEM_ERROR = ("导入时系统出错，没有导入完。已经保存的行不会丢，也不会重复；"
                "请稍后重新上传同一个文件，或联系管理员。")
_RUNNER = f"{socket.gethostname()[:40]}:{os.getpid()}"  # this process, for the job row


class ImportJob(Base):
    """One confirmed import of an application or payout list, and how far it got."""

    __tablename__ = "import_jobs"
    __table_args__ = (Index("ix_import_jobs_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # applications, payouts
    filename: Mapped[str] = mapped_column(String(200))  # as staff named it
    upload: Mapped[str] = mapped_column(String(80))  # the claimed upload's token
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    runs: Mapped[int] = mapped_column(Integer, default=0)  # started how many times
    total: Mapped[int | None] = mapped_column(Integer)  # rows in the list, once read
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # The first rows that failed: [[line, reason], ...] (at most MAX_KEPT_ERRORS).
    errors: Mapped[list[Any] | None] = mapped_column(JSON)
    message: Mapped[str | None] = mapped_column(String(500))  # why it did not finish
    # Rows staff confirmed in the preview although they move a stage backwards or
    # overwrite a change made in the UI: {application number: its stage when shown}.
    confirmed: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    runner: Mapped[str | None] = mapped_column(String(64))  # host:pid running it
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(AwareDateTime())

    @property
    def done(self) -> int:
        return self.added + self.updated + self.unchanged + self.failed

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    @property
    def state_words(self) -> str:
        return STATE_WORDS.get(self.state, self.state)

    @property
    def percent(self) -> int:
        if not self.total:
            return 100 if self.state == FINISHED else 0
        return min(100, self.done * 100 // self.total)

    @property
    def more_errors(self) -> int:
        return max(0, self.failed - len(self.errors or []))

    @property
    def error_rows(self) -> list[tuple[int, str]]:
        return [(int(line), str(reason)) for line, reason in self.errors or []]


def _stale(now: datetime) -> Any:
    """Running jobs whose process has stopped beating."""
    return and_(ImportJob.state.in_(RUNNING), ImportJob.heartbeat_at < now - STALE_AFTER)


async def create_job(db: Database, kind: str, upload: Upload, who: Actor,
                     confirmed: dict[str, str] | None = None) -> int:
    """Record a confirmed import (queued); returns its id. ``confirmed``: the rows staff
    ticked although they move a stage backwards or overwrite a change made in the UI
    ({application number: its stage when shown})."""
    async with db.session() as session:
        job = ImportJob(kind=kind, filename=upload.filename[:200], upload=upload.token,
                        state=QUEUED, user_id=who.user_id, username=who.username,
                        ip=who.ip, created_at=utcnow(), heartbeat_at=utcnow(),
                        confirmed=confirmed or None)
        session.add(job)
        await session.flush()
        return job.id


async def load_job(db: Database, job_id: int, now: datetime | None = None) -> ImportJob | None:
    """The job as it stands; a running job whose heartbeat stopped is marked interrupted
    first."""
    now = now or utcnow()
    async with db.session() as session:
        await session.execute(update(ImportJob).where(and_(ImportJob.id == job_id,
                                                           _stale(now)))
                              .values(state=INTERRUPTED, message=None))
        return await session.get(ImportJob, job_id)


async def interrupt_stale(db: Database, now: datetime | None = None) -> int:
    """Mark every running job whose process has stopped as interrupted; how many."""
    async with db.session() as session:
        result = await session.execute(update(ImportJob).where(_stale(now or utcnow()))
                                       .values(state=INTERRUPTED, message=None))
        return result.rowcount or 0


class _Stopped(Exception):
    """The process is stopping: stop reading the file."""


def _read(kind: str, path: Path, stop: threading.Event) -> CheckedList[Any]:
    rows = importer.checked_rows(path) if kind == APPLICATIONS else payouts.checked_rows(path)

    def until_stopped(items: Iterable[Any]) -> Iterable[Any]:
        for item in items:
            if stop.is_set():
                raise _Stopped()
            yield item

    return check_list(until_stopped(rows))


@dataclass
class ImportRunner:
    """Runs this admin process's import jobs (as asyncio tasks) for the app's lifetime."""

    db_of: Any  # () -> Database: the admin's engine exists only once the app has started
    vault_of: Any  # () -> Vault
    uploads: UploadStore

    def __post_init__(self) -> None:
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.stop = threading.Event()

    async def lifetime(self, _app: web.Application) -> AsyncIterator[None]:
        yield
        await self.close()

    async def close(self) -> None:
        """Stop every job of this process; each is marked interrupted."""
        self.stop.set()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self, job_id: int) -> None:
        task = asyncio.create_task(self.run(job_id), name=f"import-job-{job_id}")
        self.tasks[job_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(job_id, None))

    async def restart(self, job_id: int, now: datetime | None = None) -> bool:
        """Start an interrupted job again; False when it is not interrupted (already
        restarted by someone else, say)."""
        now = now or utcnow()
        db: Database = self.db_of()
        async with db.session() as session:
            result = await session.execute(
                update(ImportJob).where(and_(
                    ImportJob.id == job_id,
                    or_(ImportJob.state == INTERRUPTED, _stale(now))))
                .values(state=QUEUED, runner=None, heartbeat_at=utcnow(), message=None))
            if not result.rowcount:
                return False
        self.start(job_id)
        return True

    async def run(self, job_id: int) -> None:
        db: Database = self.db_of()
        beat: asyncio.Task[None] | None = None
        try:
            if not await self._claim(db, job_id):
                return
            beat = asyncio.create_task(self._heartbeat(db, job_id))
            await self._import(db, job_id)
        except asyncio.CancelledError:  # the process is stopping
            async with db.session() as session:
                await session.execute(update(ImportJob).where(and_(
                    ImportJob.id == job_id, ImportJob.state.in_(RUNNING),
                    or_(ImportJob.runner.is_(None), ImportJob.runner == _RUNNER)))
                    .values(state=INTERRUPTED))
            raise
        except Exception:
            log.exception("import job %d failed", job_id)
            await self._end(db, job_id, FAILED, SYSTEM_ERROR)
        finally:
            if beat is not None:
                beat.cancel()

    async def _import(self, db: Database, job_id: int) -> None:
        async with db.session() as session:
            job = await session.get(ImportJob, job_id)
            assert job is not None
            kind, token = job.kind, job.upload
        path = self.uploads.claimed_path(token)
        if path is None:
            await self._end(db, job_id, FAILED, FILE_GONE)
            return
        try:
            checked = await asyncio.to_thread(_read, kind, path, self.stop)
        except ImportFileError as exc:
            await self._end(db, job_id, FAILED, f"没有导入：{exc}")
            return
        except _Stopped:
            raise asyncio.CancelledError() from None
        vault: Vault = self.vault_of()
        kept = 0

        async def progress(report: ImportReport, total: int) -> None:
            nonlocal kept
            values: dict[str, Any] = {
                "state": SAVING, "total": total, "added": report.added,
                "updated": report.updated, "unchanged": report.unchanged,
                "failed": report.failed, "heartbeat_at": utcnow()}
            if len(report.errors) != kept:  # rewrite the kept errors only when they grow
                kept = len(report.errors)
                values["errors"] = [list(e) for e in sorted(report.errors)]
            await self._set(db, job_id, **values)
            await asyncio.sleep(0)  # let pages be served between batches

        if kind == APPLICATIONS:
            async with db.session() as session:
                job = await session.get(ImportJob, job_id)
                assert job is not None
                source = f"import:staff:{job.username or ''}"[:40]
                confirmed = {str(k): str(v) for k, v in (job.confirmed or {}).items()}
            report = await importer.save_applications(db, vault, checked, source,
                                                      progress=progress, name=path.name,
                                                      confirmed=confirmed)
        else:
            report = await payouts.save_payouts(db, vault, checked, progress=progress,
                                                name=path.name)
        await self._end(db, job_id, FINISHED, None, report)

    async def _claim(self, db: Database, job_id: int) -> bool:
        now = utcnow()
        async with db.session() as session:
            result = await session.execute(
                update(ImportJob).where(and_(ImportJob.id == job_id,
                                             ImportJob.state == QUEUED))
                .values(state=CHECKING, runner=_RUNNER, started_at=now, heartbeat_at=now,
                        runs=ImportJob.runs + 1, total=None, added=0, updated=0,
                        unchanged=0, failed=0, errors=None, message=None))
            return bool(result.rowcount)

    async def _heartbeat(self, db: Database, job_id: int) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._set(db, job_id, heartbeat_at=utcnow())
            except Exception:  # a busy database now and then: the next beat will do
                log.warning("import job %d: heartbeat not written", job_id)

    async def _set(self, db: Database, job_id: int, **values: Any) -> None:
        async with db.session() as session:
            await session.execute(update(ImportJob).where(and_(
                ImportJob.id == job_id, ImportJob.runner == _RUNNER,
                ImportJob.state.in_(RUNNING))).values(**values))

    async def _end(self, db: Database, job_id: int, state: str, message: str | None,
                   report: ImportReport | None = None) -> None:
        """Finish or fail the job, audit it, and delete its file."""
        async with db.session() as session:
            job = await session.get(ImportJob, job_id)
            assert job is not None
            job.state = state
            job.message = message
            job.finished_at = utcnow()
            job.heartbeat_at = job.finished_at
            if report is not None:
                job.added, job.updated = report.added, report.updated
                job.unchanged, job.failed = report.unchanged, report.failed
                job.errors = [list(e) for e in report.errors]
            action = "registry_import" if job.kind == APPLICATIONS else "payout_import"
            target = "application" if job.kind == APPLICATIONS else "payout"
            after: dict[str, Any] = {"file": job.filename, "job": job.id, "state": state}
            if report is not None:
                after.update(added=report.added, updated=report.updated,
                             unchanged=report.unchanged, failed=report.failed,
                             errors=report.error_lines()[:200])
                if job.confirmed:
                    after["confirmed"] = sorted(job.confirmed)
                if report.held:
                    after["held"] = report.held
            else:
                after["message"] = message
            record(session, Actor(job.user_id, job.username, job.ip), action, target,
                   job.filename, after=after)
            token = job.upload
        self.uploads.discard(token)


RUNNER = web.AppKey("import_runner", ImportRunner)
