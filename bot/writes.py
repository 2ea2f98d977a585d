"""Group commit and write-behind for the bot's per-message records.

Every message used to open its own transactions: claim it in the dedup ledger, read
and write the conversation, store an unanswered question, record the reply. On
SQLite each transaction is a commit and several hops to aiosqlite's thread, and the
process has one connection, so messages queued behind each other's commits.

A :class:`Writer` runs the writes of many messages in one transaction instead:

* :meth:`Writer.now` queues a database operation and waits until the transaction it
  ran in has committed (the dedup claim, the conversation state: what must be true
  in the database before the reply leaves, because a retry or the person's next
  message may reach another process). Operations queued while a transaction runs
  go together in the next one, so under load one commit serves many messages.
* :meth:`Writer.later` queues an operation and returns at once (write-behind: the
  reply recorded for retries, unanswered questions, a choice from a "did you mean"
  list). It rides along with the next transaction, or is written after
  :data:`WRITE_DELAY` seconds when nothing else comes.
* :meth:`Writer.close` (the bot's cleanup, run on SIGTERM) writes everything still
  queued before the process exits. What is queued and not yet written is lost only
  if the process is killed outright (SIGKILL, power loss): at most the last
  :data:`WRITE_DELAY` seconds of write-behind records.

Operations are plain functions of a synchronous SQLAlchemy ``Connection``, each
returning a plain value. On SQLite they run on the writer's own thread and
connection (one hop per batch, ``BEGIN IMMEDIATE``); on PostgreSQL in
``AsyncConnection.run_sync`` on the process's pool.

If a batch fails, its operations are tried one by one so one bad record never takes
the others down; a write-behind record that fails because the database is away is
kept and tried again, one refused by the database (a constraint) is logged and
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import QueuePool

from huimin.db import Database

log = logging.getLogger(__name__)

Operation = Callable[[Connection], Any]
WRITE_DELAY = 0.2  # seconds a write-behind record may wait for a transaction to join
MAX_BATCH = 500
RETRY_PAUSE = 1.0  # after a write-behind batch failed because the database is away
CLOSE_TRIES = 3


@dataclass
class _Queued:
    operation: Operation
    waiter: asyncio.Future[Any] | None  # None: write-behind
    tries: int = 0


def _transient(exc: BaseException) -> bool:
    """The database is away or busy (worth another try), not refusing the record."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError)


def _sqlite_engine(url: str) -> Engine:
    """A synchronous engine on the same SQLite file, for the writer's thread: the
    same pragmas as :func:`huimin.db.create_engine`, and ``BEGIN IMMEDIATE`` so a
    batch takes the write lock when it starts (waiting in SQLite's busy handler)
    instead of failing when a read inside it is followed by a write."""
    engine = create_engine(make_url(url).set(drivername="sqlite"), poolclass=QueuePool,
                           pool_size=1, max_overflow=0,
                           connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # transactions begin below, not in the driver
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Writer:
    """One transaction for the writes of many messages (see the module's doc)."""

    def __init__(self, db: Database, delay: float = WRITE_DELAY,
                 max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.delay = delay
        self.max_batch = max_batch
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if db.is_sqlite:
            self._engine = _sqlite_engine(db.url)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="huimin-writer")

    # ----- queueing ---------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="huimin:writer")

    async def now(self, operation: Operation) -> Any:
        """Run ``operation`` in the next transaction; its result once committed."""
        if self._task is None or self._task.done():
            return (await self._execute([operation]))[0]  # not started, or closed
        waiter = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(operation, waiter))
        self._idle.clear()
        self._wake.set()
        return await waiter

    def later(self, operation: Operation) -> None:
        """Queue ``operation`` to be written soon, without waiting for it."""
        self._queue.append(_Queued(operation, None))
        self._idle.clear()
        if self._task is None or self._task.done():
            self.start()  # a record queued during shutdown is still written by close()
        if len(self._queue) >= self.max_batch:
            self._wake.set()
        else:
            self._after(self.delay)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _after(self, seconds: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._ring)

    def _ring(self) -> None:
        self._timer = None
        self._wake.set()

    # ----- writing ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = (self._queue[:self.max_batch],
                                      self._queue[self.max_batch:])
                waiting = await self._write(batch)
                if waiting and not any(q.waiter for q in self._queue):
                    # The database is away: write-behind records wait a little.
                    self._queue[:0] = waiting
                    if self._closing:
                        return
                    self._after(max(self.delay, RETRY_PAUSE))
                    break
                self._queue[:0] = waiting
            if not self._queue:
                self._idle.set()

    async def _write(self, batch: list[_Queued]) -> list[_Queued]:
        """Write ``batch``; the write-behind records to try again later."""
        try:
            results = await self._execute([q.operation for q in batch])
        except Exception as exc:
            if len(batch) == 1:
                return self._failed(batch[0], exc)
            retry: list[_Queued] = []
            for queued in batch:  # one by one: a bad record never takes the others down
                retry += await self._write([queued])
            return retry
        for queued, result in zip(batch, results, strict=True):
            if queued.waiter is not None and not queued.waiter.done():
                queued.waiter.set_result(result)
        return []

    def _failed(self, queued: _Queued, exc: Exception) -> list[_Queued]:
        if queued.waiter is not None:
            if not queued.waiter.done():
                queued.waiter.set_exception(exc)
            return []
        if _transient(exc):
            queued.tries += 1
            if queued.tries == 1:
                log.warning("a record could not be written yet (%s); trying again",
                            type(exc).__name__)
            return [queued]
        log.error("a record was refused by the database and dropped: %s", exc)
        return []

    async def _execute(self, operations: list[Operation]) -> list[Any]:
        if self._engine is not None:
            loop = asyncio.get_running_loop()
            async with self._turn():
                return await loop.run_in_executor(self._thread, self._in_thread, operations)
        async with self.db.engine.begin() as conn:
            return await conn.run_sync(lambda sync: [op(sync) for op in operations])

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Hold the process's own SQLite connection (its pool has one) while a batch
        runs on the writer's: the bot's other writes (status lookups, hand-offs,
        followers …) then take turns with the writer in asyncio instead of sleeping
        in SQLite's busy handler. Should the connection not come (someone holding it
        waits for this writer) the pool's timeout ends the wait and the batch fails.
        No ``wait_for`` around the checkout: on Python 3.11 a connection obtained just
        as the wait is cancelled would be lost, and with it the pool's only one."""
        async with self.db.engine.connect():
            yield

    def _in_thread(self, operations: list[Operation]) -> list[Any]:
        assert self._engine is not None
        with self._engine.begin() as conn:
            return [op(conn) for op in operations]

    # ----- flushing and closing -----------------------------------------------------
    async def flush(self) -> None:
        """Wait until everything queued so far is written (or kept after a failure)."""
        if not self._queue and self._idle.is_set():
            return
        if self._task is None or self._task.done():
            self.start()
        self._wake.set()
        await self._idle.wait()

    async def close(self) -> None:
        """Write everything still queued, then stop (the process is about to exit)."""
        self._closing = True
        for attempt in range(CLOSE_TRIES):
            if not self._queue and self._idle.is_set():
                break  # nothing queued, no batch in flight
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name="huimin:writer")
            self._wake.set()
            waiter = asyncio.create_task(self._idle.wait())
            await asyncio.wait([waiter, self._task], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if self._queue and attempt + 1 < CLOSE_TRIES:
                await asyncio.sleep(RETRY_PAUSE)
        if self._queue:
            log.error("%d records could not be written before exit (database away)",
                      len(self._queue))
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._engine is not None:
            self._engine.dispose()
