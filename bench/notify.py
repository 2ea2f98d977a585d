"""The notifier at county scale: ``python -m bench.notify`` (``--quick`` for a short run).

Measures, in one run, and prints figures only (nothing asserts):

1. Planning: a fresh SQLite database (``huimin.wiring.cli.initialise``) with N beneficiaries
   (bulk-inserted, valid fake ID numbers, distinct phones, encrypted with the Vault)
   and one payout line each for 2026-11; ``notify.plan.plan`` timed at 10:00 Beijing
   time, then run again to show that nothing is queued twice.
2. Sending on SQLite: the real Tencent provider (``notify.providers.tencent.TencentSms``,
   TC3-signed) against a Tencent-protocol fake (``bench.notify_fakes``) in its own
   process that accepts at most R numbers a second (over that: ``RequestLimitExceeded``)
   and records, per phone, every text it accepted. One worker process
   (``python -m bench.notify worker``: rate R booked in ``send_rates``,
   ``PhoneCaps(spacing=0)``, a fixed daytime
   clock, ``run(once=True)``) sends the queue (all N, but at most 100,000 unless
   ``--send-n`` says otherwise: the whole default N, about 50 s at R = 2,000);
   then a tenth as many, to compare the worker's peak memory; then ten seconds' worth at
   a low R the worker can reach (``--low-rate``), to check the rate limiter itself. When
   the rate misses 0.9 R, a short extra send is profiled (cProfile, grouped by library).
3. PostgreSQL (database ``huimin_bench``, created if missing, emptied first; N/10
   messages, at most 10,000): two worker processes share the queue and one rate
   schedule of R (the ``send_rates`` table, as deployed without Redis).
4. Kill test on PostgreSQL: one worker is SIGKILLed half way through (the fake's count is
   polled), a second one with a short ``--stale-after`` (and a fixed clock that much
   later) sweeps the stale claims and finishes. By default the kill lands while the fake
   holds its answer to the call that crossed half the queue (``--kill-at``): accepted by
   the provider, not yet recorded, the case a restarted worker must reconcile by asking
   the fake what it sent (``DescribeSendRecordList``, in wall-clock time as a provider
   keeps it, answered at most ``--describe-rate`` times a second, as Tencent documents).
5. Distinct texts: every household its own payout amount, so that every SMS has its own
   text and goes in its own ``SendSms`` call (one number) instead of up to 200 numbers a
   call. One SQLite worker at several caps R (``--distinct-rates``) and concurrencies
   (``--distinct-concurrency``), each run ``--distinct-seconds`` worth at its cap; the
   rate is judged after the first second (both token buckets start full).

For each worker it also prints where run() spent its time (claim, recipients, the
deliveries, record), the mean latency of the phone-cap reservation and of the provider
call, and the SQL statements and transactions per message.

Every send is checked against the fake, per phone (every planned message has its own
phone, so nothing depends on the reference sent as ``SessionContext``): lost (planned
but never accepted, or marked sent without being accepted), sent twice (a phone accepted
more than once) and wrong text (a phone sent a template or parameters other than its
message's) are counted as the fake saw them. Processes run one phase at a time so they do
not compete for the cores more than the phase needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.report import table

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-notify-secret-key-0123456789"
DAYTIME = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"
PG_DATABASE = "huimin_bench"
TEMPLATES = {"payout": "2000001", "recheck_due": "2000002", "recheck_overdue": "2000003",
             "status_change": "2000004", "verification_code": "2000005"}
TARGET_RATIO = 0.9
DEFAULT_SEND_N = 100_000  # all of the default N (about 50 s at R = 2,000)
DEFAULT_PG_N = 10_000
LOW_RATE_SECONDS = 10.0  # the low-R run sends this many seconds' worth
PROFILE_N = 1500
DISTINCT_RATES = (250.0, 500.0, 1000.0, 2000.0)
DISTINCT_CONCURRENCY = (32, 64, 128)
DISTINCT_SECONDS = 6.0
DISTINCT_N = 10_000
QUICK_DISTINCT_RATES = (500.0, 1000.0)
QUICK_DISTINCT_CONCURRENCY = (32, 64)
QUICK_DISTINCT_SECONDS = 4.0
QUICK_DISTINCT_N = 4_000
KILL_HOLD_SECONDS = 5.0  # under the provider's 10 s timeout; the kill comes within ~0.1 s
READY_TIMEOUT = 60.0
WORKER_TIMEOUT = 900.0


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def fmt_list(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


# ----- fake people ---------------------------------------------------------------------
def fake_id(i: int) -> str:
    """A valid (GB 11643 check digit) ID number, distinct for each ``i``."""
    from huimin.personal import id_check_digit

    born = date(1950, 1, 1) + timedelta(days=i // 500)
    first17 = f"341323{born:%Y%m%d}{(i % 500) * 2:03d}"
    return first17 + id_check_digit(first17)


def phone_of(beneficiary_id: int) -> str:
    return f"139{beneficiary_id:08d}"


_REFERENCE = re.compile(r"^payout:(\d+):")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def payout_amount(beneficiary_id: int, distinct: bool) -> Decimal:
    """The month's payout of one household: the same for all, or (``distinct``) its own
    amount, so that every reminder's text differs (as real 低保 amounts do)."""
    return Decimal(50_000 + beneficiary_id) / 100 if distinct else Decimal("625.00")


async def populate(db: Any, vault: Any, n: int, month: str, chunk: int = 5000,
                   distinct_amounts: bool = False) -> None:
    """N beneficiaries (ids 1..N) and one payout line each, bulk inserted."""
    from sqlalchemy import insert

    from huimin.personal import mask_id, mask_phone
    from huimin.registry.models import Beneficiary
    from notify.models import PayoutLine

    now = datetime.now(UTC)
    for start in range(0, n, chunk):
        people, payouts = [], []
        for i in range(start, min(n, start + chunk)):
            bid = i + 1
            id_number, phone = fake_id(i), phone_of(bid)
            people.append({
                "id": bid, "name": f"测试{bid}", "id_hash": vault.lookup_hash(id_number),
                "id_encrypted": vault.encrypt(id_number), "id_masked": mask_id(id_number),
                "phone_hash": vault.lookup_hash(phone), "phone_encrypted": vault.encrypt(phone),
                "phone_masked": mask_phone(phone), "township": "娄庄镇",
                "created_at": now, "updated_at": now})
            payouts.append({"beneficiary_id": bid, "programme": "低保", "month": month,
                            "amount": payout_amount(bid, distinct_amounts),
                            "imported_at": now})
        async with db.session() as session:
            await session.execute(insert(Beneficiary), people)
            await session.execute(insert(PayoutLine), payouts)


async def add_payouts(db: Any, n: int, month: str, chunk: int = 5000) -> None:
    """One more payout line (another month) for beneficiaries 1..N."""
    from sqlalchemy import insert

    from notify.models import PayoutLine

    now = datetime.now(UTC)
    for start in range(0, n, chunk):
        async with db.session() as session:
            await session.execute(insert(PayoutLine), [
                {"beneficiary_id": bid, "programme": "低保", "month": month,
                 "amount": Decimal("625.00"), "imported_at": now}
                for bid in range(start + 1, min(n, start + chunk) + 1)])


async def timed_plan(url: str) -> tuple[float, Any, Any]:
    from huimin.db import Database
    from notify.plan import plan

    db = Database(url)
    try:
        started = time.perf_counter()
        first = await plan(db, now=DAYTIME)
        seconds = time.perf_counter() - started
        again = await plan(db, now=DAYTIME)
    finally:
        await db.dispose()
    return seconds, first, again


async def prepare(url: str, n: int, month: str, reset_postgres: bool = False,
                  distinct_amounts: bool = False) -> float:
    """Schema and content (``initialise``), then the people; returns the insert seconds."""
    from huimin.db import Database
    from huimin.personal import Vault
    from huimin.settings import Settings
    from huimin.wiring.cli import initialise

    if reset_postgres:
        await reset_pg(url)
    await initialise(Settings(database_url=url))
    db = Database(url)
    try:
        started = time.perf_counter()
        await populate(db, Vault(SECRET_KEY), n, month, distinct_amounts=distinct_amounts)
        return time.perf_counter() - started
    finally:
        await db.dispose()


async def reset_pg(url: str) -> None:
    """Create the bench database if missing and empty it (its own database: no test clash)."""
    import asyncpg

    admin = await asyncpg.connect(PG_SERVER.replace("+asyncpg", "") + "/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                    PG_DATABASE):
            await admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def outbox_states(url: str, key_like: str) -> dict[str, str]:
    """Key -> state of the outbox rows matching ``key_like``."""
    return {key: row.state for key, row in (await outbox_rows(url, key_like)).items()}


@dataclass(frozen=True)
class Row:
    state: str
    kind: str
    params: dict[str, str]


async def outbox_rows(url: str, key_like: str) -> dict[str, Row]:
    """Key -> state, kind and parameters of the outbox rows matching ``key_like``."""
    from sqlalchemy import select

    from huimin.db import Database
    from notify.models import OutboxMessage

    db = Database(url)
    try:
        async with db.session() as session:
            rows = (await session.execute(
                select(OutboxMessage.key, OutboxMessage.state, OutboxMessage.kind,
                       OutboxMessage.params).where(OutboxMessage.key.like(key_like)))).all()
    finally:
        await db.dispose()
    return {key: Row(state, kind, dict(params or {})) for key, state, kind, params in rows}


def tencent_templates() -> dict[str, str]:
    """Tencent template id -> template text (``{1}``, ``{2}``, …), from the same template
    names, ids and county file the workers use: what the fake fills in for
    DescribeSendRecordList's ``Content``."""
    from content.load import load_county
    from huimin.settings import DEFAULT_COUNTY_FILE
    from notify.sms import provider_template_text

    county = load_county(DEFAULT_COUNTY_FILE)
    texts = {}
    for name, template_id in TEMPLATES.items():
        try:
            texts[template_id] = provider_template_text(name, county)
        except Exception as exc:  # a template file missing: the fake refuses that id
            print(f"  (no template text for {name}: {type(exc).__name__}: {exc})")
    return texts



# ----- the worker process --------------------------------------------------------------
def rss_kb(field: str = "VmRSS") -> int:
    """This process's resident set (or, with ``VmHWM``, its peak), in kB; 0 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kb() -> int:
    """The peak RSS: VmHWM (which a reset lowers), else ru_maxrss (kB on Linux)."""
    return rss_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: VmHWM), so that the peak read after run() is
    run()'s own and not the imports'. (ru_maxrss may keep the old peak once a thread has
    exited, so the peak is read from VmHWM.)"""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class StepTimes:
    """Wall time spent in the worker's steps (wrapping its methods, no project change)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.returned: Counter[str] = Counter()  # sums of int results (rows swept)

    def wrap(self, name: str, method: Any) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1
            if isinstance(result, int):
                self.returned[name] += result
            return result

        return timed


async def _work(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import event

    from content.load import load_county
    from huimin.db import Database
    from huimin.personal import Vault
    from huimin.settings import DEFAULT_COUNTY_FILE
    from notify.providers.tencent import TencentSms
    from notify.rules import DatabasePhoneLimiter, DatabaseRateStore, PhoneCaps
    from notify.worker import Worker
    from tests.fakes.sms_servers import TENCENT_APP_ID, TENCENT_SECRET_ID, TENCENT_SECRET_KEY

    county = load_county(DEFAULT_COUNTY_FILE)
    db = Database(args.database_url)
    provider = TencentSms(args.endpoint, "ap-guangzhou", TENCENT_SECRET_ID, TENCENT_SECRET_KEY,
                          TENCENT_APP_ID, county["sms_signature"], TEMPLATES)
    limiter = DatabasePhoneLimiter(db, PhoneCaps(spacing=timedelta(0)))
    moment = DAYTIME + timedelta(seconds=args.clock_offset)
    worker = Worker.assemble(db, Vault(SECRET_KEY), county, [provider], limiter,
                             rate=args.rate, rate_store=DatabaseRateStore(db), batch=args.batch,
                             concurrency=args.concurrency,
                             stale_after=timedelta(seconds=args.stale_after), name=args.name,
                             clock=lambda: moment)
    steps = StepTimes()
    # Instance attributes shadow the methods: the worker calls these wrappers.
    worker.sweep = steps.wrap("sweep", worker.sweep)  # type: ignore[method-assign]
    worker.claim = steps.wrap("claim", worker.claim)  # type: ignore[method-assign]
    worker.process = steps.wrap("process", worker.process)  # type: ignore[method-assign]
    outbox, reconciler = worker.outbox, worker.reconciler
    outbox.recipients = steps.wrap("recipients", outbox.recipients)  # type: ignore[method-assign]
    outbox.record = steps.wrap("record", outbox.record)  # type: ignore[method-assign]
    # Asks the provider what it sent.
    reconciler.reconcile = steps.wrap("reconcile", reconciler.reconcile)  # type: ignore[method-assign]
    limiter.reserve = steps.wrap("reserve", limiter.reserve)  # type: ignore[method-assign]
    provider.send = steps.wrap("send", provider.send)  # type: ignore[method-assign]
    statements: Counter[str] = Counter()
    counting = False

    def count_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if counting:
            verb = statement.split(None, 1)[0].upper()
            found = re.search(r"\b(?:INTO|FROM|UPDATE)\s+\"?(\w+)", statement, re.IGNORECASE)
            statements[f"{verb} {found.group(1) if found else '?'}"] += 1

    def count_commit(_conn: Any) -> None:
        if counting:
            statements["(commit)"] += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count_statement)
    event.listen(db.engine.sync_engine, "commit", count_commit)
    rss_samples: list[int] = []

    def sample_rss(_claimed: int) -> None:
        rss_samples.append(rss_kb())

    try:
        # Open the first connection before measuring (as a long-running worker has it).
        async with db.session():
            pass
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        startup_peak = peak_rss_kb()
        peak_reset = reset_peak_rss()
        before = rss_kb()
        counting = True
        started = time.perf_counter()
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        summary = await worker.run(once=True, progress=sample_rss)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        run_peak = peak_rss_kb()
    finally:
        await provider.close()
        await db.dispose()
    return {"name": args.name, "seconds": seconds, "cpu": cpu, "sent": summary.sent,
            "rescheduled": summary.rescheduled, "skipped": summary.skipped,
            "failed": dict(summary.failed), "held": summary.held_for_quiet_hours,
            "swept": steps.returned["sweep"], "sweeps": steps.calls["sweep"],
            "rss_before_kb": before, "startup_peak_kb": startup_peak,
            "peak_reset": peak_reset, "run_peak_kb": run_peak,
            "rss_first_batch_kb": rss_samples[0] if rss_samples else 0,
            "rss_last_batch_kb": rss_samples[-1] if rss_samples else 0,
            "batches": len(rss_samples),
            "concurrency": args.concurrency, "has_reconcile": True,
            "steps": dict(steps.seconds), "step_calls": dict(steps.calls),
            "statements": dict(statements)}


def worker_main(argv: Sequence[str]) -> int:
    import logging

    parser = argparse.ArgumentParser(prog="python -m bench.notify worker")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--endpoint", required=True, help="the SMS fake's base URL")
    parser.add_argument("--rate", type=float, required=True, help="sends a second (this worker)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--stale-after", type=float, default=120.0,
                        help="seconds after which another worker's claim is swept")
    parser.add_argument("--clock-offset", type=float, default=0.0,
                        help="seconds after 10:00 Beijing on 2026-12-01 (the fixed clock)")
    parser.add_argument("--profile", help="write cProfile stats of run() here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING,
                        format=f"[{args.name}] %(levelname)s %(name)s: %(message)s")
    result = asyncio.run(_work(args))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ----- processes -----------------------------------------------------------------------
@dataclass
class Fake:
    process: Any
    stop: Any
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, what: str) -> Any:
        with urllib.request.urlopen(f"{self.endpoint}/_bench/{what}", timeout=30) as response:
            return json.loads(response.read())


@dataclass
class Processes:
    """Everything this benchmark started, so that ``close`` can end it all."""

    ctx: Any
    workdir: Path
    templates: dict[str, str] = field(default_factory=dict)  # Tencent id -> text
    describe_rate: float = 10.0
    fakes: list[Fake] = field(default_factory=list)
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    def start_fake(self, rate: float, verify_every: int) -> Fake:
        from bench.notify_fakes import serve

        ready, stop = self.ctx.Queue(), self.ctx.Event()
        process = self.ctx.Process(target=serve, args=(rate, verify_every, ready, stop,
                                                       self.templates, self.describe_rate),
                                   name="bench-tencent-fake", daemon=True)
        fake = Fake(process, stop)
        self.fakes.append(fake)
        process.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                status, value = ready.get(timeout=0.5)
                break
            except queue.Empty:
                if not process.is_alive():
                    raise RuntimeError(f"SMS fake exited with code {process.exitcode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("SMS fake not ready in time") from None
        if status != "ok":
            raise RuntimeError(f"SMS fake failed to start: {value}")
        fake.port = int(value)
        return fake

    def stop_fake(self, fake: Fake) -> None:
        if fake.process.pid is None:
            return
        fake.stop.set()
        fake.process.join(10)
        if fake.process.is_alive():
            fake.process.terminate()
            fake.process.join(5)
        if fake.process.is_alive():
            fake.process.kill()
            fake.process.join(5)

    def start_worker(self, url: str, fake: Fake, rate: float, name: str,
                     args: argparse.Namespace, *extra: str,
                     concurrency: int | None = None) -> subprocess.Popen[str]:
        log = (self.workdir / f"{name}.log").open("w")
        command = [sys.executable, "-m", "bench.notify", "worker", "--database-url", url,
                   "--endpoint", fake.endpoint, "--rate", f"{rate:g}", "--name", name,
                   "--batch", str(args.batch),
                   "--concurrency", str(concurrency or args.concurrency), *extra]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
                                   text=True)
        log.close()
        self.workers.append(process)
        return process

    def finish_worker(self, process: subprocess.Popen[str], name: str) -> dict[str, Any]:
        try:
            out, _ = process.communicate(timeout=WORKER_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RuntimeError(f"worker {name} did not finish in {WORKER_TIMEOUT:.0f} s"
                               ) from None
        for line in out.splitlines():
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[len("RESULT "):])
                result["log"] = self.log_summary(name)
                return result
        raise RuntimeError(f"worker {name} exited with code {process.returncode}:\n"
                           + self.log_tail(name))

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_summary(self, name: str) -> Counter[str]:
        """The worker's log lines, digits and ids blurred, counted (warnings are rare)."""
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return Counter(re.sub(r"\d+", "#", _UUID.sub("<id>", line.split(": ", 1)[-1]))[:120]
                       for line in text.splitlines() if line.startswith("["))

    def close(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        for fake in self.fakes:
            self.stop_fake(fake)


# ----- checking what was sent ----------------------------------------------------------
@dataclass
class Check:
    planned: int
    states: Counter[str]
    delivered: int  # planned messages whose phone the fake accepted
    not_delivered: int  # planned, never accepted by the fake
    queued_for_retry: int  # of those, rows queued again for a later try (not yet due)
    marked_sent_not_delivered: int
    delivered_not_marked: int  # accepted by the fake, the row does not say sent
    sent_twice: int  # messages (phones) accepted more than once
    extra_sends: int  # acceptances beyond the first, per message
    unknown: int  # accepted phones that belong to no planned message
    wrong_text: int  # phones sent a text (template, parameters) not their message's

    @property
    def lost(self) -> int:
        return self.not_delivered + self.marked_sent_not_delivered


def expected_text(row: Row) -> tuple[str, tuple[str, ...]]:
    """What the fake should have been sent for a row: Tencent template id, parameters in
    the template's order."""
    from notify.sms import template_variables

    return TEMPLATES.get(row.kind, row.kind), tuple(
        str(row.params[name]) for name in template_variables(row.kind) if name in row.params)


def phone_keys(keys: Iterable[str]) -> dict[str, str]:
    """"+86…" -> the key of the planned message for that phone (each its own phone)."""
    by_phone = {}
    for key in keys:
        match = _REFERENCE.match(key)
        if match is not None:
            by_phone["+86" + phone_of(int(match.group(1)))] = key
    return by_phone


def accepted_keys(accepted: dict[str, Any], by_phone: dict[str, str]) -> dict[str, int]:
    """Key -> how many times the fake accepted its phone (from ``/_bench/accepted``)."""
    return {by_phone[phone]: len(texts) for phone, texts in accepted["phones"]
            if phone in by_phone}


def check(fake: Fake, rows: dict[str, Row]) -> Check:
    """What the fake accepted, per phone, against the outbox rows: each planned message
    has its own phone, so the phone stands for the message (no reference is needed)."""
    from notify.models import QUEUED, SENT

    accepted = fake.get("accepted")
    texts = [(template_id, tuple(params)) for template_id, params in accepted["texts"]]
    by_phone = phone_keys(rows)
    counts: dict[str, int] = {}
    unknown = wrong_text = 0
    for phone, indexes in accepted["phones"]:
        key = by_phone.get(phone)
        if key is None:
            unknown += 1
            continue
        counts[key] = len(indexes)
        expected = expected_text(rows[key])
        if any(texts[i] != expected for i in indexes):
            wrong_text += 1
    keys = set(rows)
    sent_keys = {k for k, row in rows.items() if row.state == SENT}
    missing = keys - counts.keys()
    twice = {k: n for k, n in counts.items() if n > 1}
    return Check(
        planned=len(keys), states=Counter(row.state for row in rows.values()),
        delivered=len(counts), not_delivered=len(missing),
        queued_for_retry=sum(1 for k in missing if rows[k].state == QUEUED),
        marked_sent_not_delivered=len(sent_keys - counts.keys()),
        delivered_not_marked=len(counts.keys() - sent_keys),
        sent_twice=len(twice), extra_sends=sum(n - 1 for n in twice.values()),
        unknown=unknown, wrong_text=wrong_text)


# ----- phases --------------------------------------------------------------------------
@dataclass
class SendRun:
    label: str
    messages: int
    rate: float
    workers: list[dict[str, Any]]
    fake: dict[str, Any]
    check: Check
    wall: float  # from starting the worker processes until the last one exited

    @property
    def achieved(self) -> float:
        span = self.fake["accept_span"]
        return self.fake["accepted"] / span if span > 0 else 0.0

    @property
    def steady(self) -> float:
        """The rate after the first second (0.0 for a run shorter than two seconds)."""
        return float(self.fake.get("steady_rate") or 0.0)


def run_send(procs: Processes, args: argparse.Namespace, label: str, url: str, rate: float,
             workers: int, key_like: str, profile: Path | None = None,
             concurrency: int | None = None) -> SendRun:
    fake = procs.start_fake(rate, args.verify_every)
    try:
        started = time.perf_counter()
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        names = [f"{slug}-w{i + 1}" for i in range(workers)]
        extra = ("--profile", str(profile)) if profile else ()
        # The rate is the provider's: the workers share one schedule (send_rates).
        running = [procs.start_worker(url, fake, rate, name, args, *extra,
                                      concurrency=concurrency)
                   for name in names]
        results = [procs.finish_worker(p, name) for p, name in zip(running, names, strict=True)]
        wall = time.perf_counter() - started
        rows = asyncio.run(outbox_rows(url, key_like))
        result = check(fake, rows)
        stats = fake.get("stats")
    finally:
        procs.stop_fake(fake)
    return SendRun(label, len(rows), rate, results, stats, result, wall)


@dataclass
class KillRun:
    messages: int
    killed_at: int  # the fake's accepted count when the worker was killed
    states_after_kill: Counter[str]
    in_flight_sent: int  # rows left in `sending` whose phone the fake had accepted
    second: dict[str, Any]
    fake: dict[str, Any]
    check: Check
    wall: float


def run_kill(procs: Processes, args: argparse.Namespace, url: str, key_like: str) -> KillRun:
    from notify.models import SENDING

    fake = procs.start_fake(args.rate, args.verify_every)
    try:
        started = time.perf_counter()
        total = len(asyncio.run(outbox_states(url, key_like)))
        if args.kill_at == "in-flight":  # the fake holds the answer to the call halfway
            # (+1: half the queue may be a batch boundary, whose call is a short tail chunk)
            fake.get(f"hold?after={total // 2 + 1}&seconds={KILL_HOLD_SECONDS:g}")
        first = procs.start_worker(url, fake, args.rate, "kill-w1", args)
        killed_at = 0
        while first.poll() is None:
            stats = fake.get("stats")
            killed_at = stats["accepted"]
            if stats["held_calls"] if args.kill_at == "in-flight" else killed_at >= total // 2:
                first.send_signal(signal.SIGKILL)
                first.wait(10)
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("the first worker finished before it could be killed:\n"
                               + procs.log_tail("kill-w1"))
        killed_at = fake.get("stats")["accepted"]
        after_kill = asyncio.run(outbox_states(url, key_like))
        accepted = accepted_keys(fake.get("accepted"), phone_keys(after_kill))
        in_flight_sent = sum(1 for key, state in after_kill.items()
                             if state == SENDING and key in accepted)
        # The second worker's fixed clock is stale_after + 1 s later: the killed worker's
        # claims are stale by then, as they would be when a supervisor restarts it.
        second = procs.start_worker(url, fake, args.rate, "kill-w2", args,
                                    "--stale-after", f"{args.stale_after:g}",
                                    "--clock-offset", f"{args.stale_after + 1:g}")
        result = procs.finish_worker(second, "kill-w2")
        wall = time.perf_counter() - started
        checked = check(fake, asyncio.run(outbox_rows(url, key_like)))
        stats = fake.get("stats")
    finally:
        procs.stop_fake(fake)
    return KillRun(total, killed_at, Counter(after_kill.values()), in_flight_sent, result,
                   stats, checked, wall)


# ----- report --------------------------------------------------------------------------
def mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_sends(runs: Sequence[SendRun]) -> None:
    rows = []
    for run in runs:
        ratio = run.achieved / run.rate
        rows.append([
            run.label, len(run.workers), run.messages, f"{run.rate:g}", f"{run.achieved:.0f}",
            f"{ratio:.2f} ({verdict(ratio >= TARGET_RATIO)})",
            f"{max(w['seconds'] for w in run.workers):.1f}", f"{run.wall:.1f}",
            "/".join(mb(w["rss_before_kb"]) for w in run.workers),
            "/".join(f"{mb(w['rss_first_batch_kb'])}->{mb(w['rss_last_batch_kb'])}"
                     for w in run.workers),
            "/".join(mb(w["run_peak_kb"]) for w in run.workers),
            "/".join(mb(w["startup_peak_kb"]) for w in run.workers),
            "/".join(f"{w['cpu'] / max(w['sent'], 1) * 1000:.2f}" for w in run.workers),
            run.fake["throttled_calls"]])
    print(table(["run", "workers", "messages", "R/s", "sent/s", "ratio to R", "run() s",
                 "wall s", "RSS before MB", "RSS 1st->last batch", "peak in run() MB",
                 "start-up peak MB", "CPU ms/msg", "throttled calls"], rows))
    for run in runs:
        for w in run.workers:
            print(f"  {w['name']}: {steps_text(w)}")
        fake = run.fake
        print(f"  fake ({run.label}): {fake['calls']:,} calls, {fake['verified']:,} TC3 "
              f"signatures recomputed, {fake['bad_signatures']} bad, protocol problems: "
              f"{fake['problems'] or 'none'}")
        for w in run.workers:
            if w["log"]:
                common = "; ".join(f"{n}x {text}" for text, n in w["log"].most_common(3))
                print(f"  log of {w['name']}: {sum(w['log'].values())} lines ({common})")


def print_memory(big_run: SendRun, small_run: SendRun) -> None:
    big, small = big_run.workers[0], small_run.workers[0]
    big_growth = big["run_peak_kb"] - big["rss_before_kb"]
    small_growth = small["run_peak_kb"] - small["rss_before_kb"]
    flat = big_growth - small_growth < max(10 * 1024, small["rss_before_kb"] // 10)
    print(f"  memory: peak RSS during run() {mb(big['run_peak_kb'])} MB for "
          f"{big_run.messages:,} messages ({big_growth / 1024:+.1f} MB over the RSS before) vs "
          f"{mb(small['run_peak_kb'])} MB for {small_run.messages:,} "
          f"({small_growth / 1024:+.1f} MB): "
          f"{'flat' if flat else 'GROWS with the number of messages'}.")
    how = ("the peak RSS (VmHWM) is reset just before run(), so 'peak in run()' is run()'s "
           "own" if big["peak_reset"] else "the peak RSS could not be reset (no "
           "/proc/self/clear_refs): 'peak in run()' includes start-up")
    print(f"  (RSS before = after imports and the first connection; 1st->last batch = RSS "
          f"after the first and the last batch; {how}; start-up peak = VmHWM before "
          f"run(), from the imports (ru_maxrss is not used: in a child started by fork+exec "
          f"it also counts the parent's RSS at the fork); CPU ms/msg = the worker's process "
          f"time, all threads, per message sent)")


def throttled(runs: Sequence[SendRun]) -> None:
    hit = [run for run in runs if run.fake["throttled_calls"]]
    if hit:
        print("  throttled calls (" + ", ".join(
            f"{run.label}: {run.fake['throttled_calls']}" for run in hit) + "): the fake "
              "answered RequestLimitExceeded although the worker's own limiter is set to the "
              "same R (arrival jitter); the worker asks again after growing pauses (three "
              "calls at most, then the message waits 5 s) and never sets the provider "
              "aside for it.")


def steps_text(w: dict[str, Any]) -> str:
    """Where run() spent its time: the serial steps, and the mean latency of the calls
    made concurrently inside the deliveries."""
    steps, calls = w["steps"], w["step_calls"]
    total = w["seconds"] or 1.0
    deliveries = steps.get("process", 0.0) - steps.get("recipients", 0.0) - steps.get(
        "record", 0.0)
    serial = [("claim", steps.get("claim", 0.0)), ("recipients", steps.get("recipients", 0.0)),
              ("deliveries", deliveries), ("record", steps.get("record", 0.0)),
              ("sweep", steps.get("sweep", 0.0))]
    parts = ", ".join(f"{name} {100 * sec / total:.0f}%" for name, sec in serial)
    latency = ", ".join(
        f"{name} {1000 * steps[name] / calls[name]:.1f} ms" for name in ("reserve", "send")
        if calls.get(name))
    sent = max(w["sent"], 1)
    sql = w.get("statements", {})
    commits = sql.get("(commit)", 0)
    kinds = ", ".join(f"{kind} {count / sent:.2f}" for kind, count in sorted(
        sql.items(), key=lambda item: -item[1]) if kind != "(commit)" and count / sent >= 0.05)
    return (f"run() time in claim/recipients/deliveries/record/sweep: {parts}; "
            f"mean latency per call ({w.get('concurrency', '?')} in flight): {latency}; "
            f"per message sent: "
            f"{(sum(sql.values()) - commits) / sent:.2f} SQL statements in "
            f"{commits / sent:.2f} transactions ({kinds})")


def print_checks(items: Sequence[tuple[str, Check]]) -> None:
    rows = []
    for label, c in items:
        states = ", ".join(f"{k} {v}" for k, v in sorted(c.states.items()))
        rows.append([label, c.planned, c.delivered, c.lost, c.queued_for_retry,
                     c.delivered_not_marked, c.sent_twice, c.extra_sends, c.unknown,
                     c.wrong_text, states])
    print(table(["run", "planned", "delivered", "lost", "of which queued for retry",
                 "delivered, row not sent", "sent twice", "extra sends", "unknown phone",
                 "wrong text", "outbox after"], rows))
    print("  counted per phone (each planned message has its own phone): lost = planned but "
          "never accepted by the fake + marked sent but never accepted; a row queued for "
          "retry would go out on a later run (the run ends when nothing is due, and a "
          "retry's not_before is later); sent twice = phones the fake accepted more than "
          "once; wrong text = phones sent a template or parameters other than their "
          "message's")


_GROUPS = (("epoll", "waiting (epoll: idle or I/O)"),
           ("simplequeue", "aiosqlite (hand-off to its thread)"), ("sqlalchemy", "sqlalchemy"),
           ("greenlet", "sqlalchemy"), ("aiosqlite", "aiosqlite"), ("asyncpg", "asyncpg"),
           ("aiohttp", "aiohttp"), ("yarl", "aiohttp"), ("multidict", "aiohttp"),
           ("jinja2", "jinja2"), ("cryptography", "cryptography (Fernet)"),
           ("fernet", "cryptography (Fernet)"), ("hmac", "hashlib/hmac"),
           ("hashlib", "hashlib/hmac"), ("json", "json"), ("asyncio", "asyncio"),
           ("/notify/", "notify (project)"), ("/huimin/", "huimin (project)"),
           ("socket", "socket"))


def profile_groups(stats: Any) -> list[tuple[str, float]]:
    """Own time (tottime) summed by library, from a pstats.Stats."""
    totals: Counter[str] = Counter()
    for (path, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():
        where = f"{path} {name}".lower()
        group = next((label for needle, label in _GROUPS if needle in where), "other")
        totals[group] += own
    return totals.most_common()


def print_profile(path: Path, limit: int = 15) -> None:
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    groups = profile_groups(stats)
    total = sum(t for _, t in groups) or 1.0
    print("  own time by library (cProfile of run(), main thread only; aiosqlite's thread "
          "and the database server are not in it):")
    print("    " + "; ".join(f"{g} {100 * t / total:.0f}%" for g, t in groups
                             if t / total >= 0.01))
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print(f"  top {limit} functions by own time:")
    for line in lines[start:start + limit + 1]:
        print("    " + line[:130])


def load_text() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"
    except OSError:
        return "load average unknown"


# ----- main ----------------------------------------------------------------------------
async def add_payouts_and_plan(url: str, n: int, month: str) -> None:
    from huimin.db import Database
    from notify.plan import plan

    db = Database(url)
    try:
        await add_payouts(db, n, month)
        await plan(db, now=DAYTIME)
    finally:
        await db.dispose()


def sqlite_queue(workdir: Path, name: str, size: int, distinct_amounts: bool = False) -> str:
    """A fresh SQLite database with ``size`` payout reminders queued."""
    url = f"sqlite+aiosqlite:///{workdir / f'{name}.db'}"
    asyncio.run(prepare(url, size, "2026-11", distinct_amounts=distinct_amounts))
    asyncio.run(timed_plan(url))
    return url


def sqlite_copy(workdir: Path, source: str, name: str) -> str:
    """A copy of a (closed) SQLite database, to run the same queue again."""
    path = Path(source.removeprefix("sqlite+aiosqlite:///"))
    target = workdir / f"{name}.db"
    for suffix in ("", "-wal"):
        if Path(f"{path}{suffix}").exists():
            shutil.copyfile(f"{path}{suffix}", f"{target}{suffix}")
    return f"sqlite+aiosqlite:///{target}"


def sqlite_remove(url: str) -> None:
    path = url.removeprefix("sqlite+aiosqlite:///")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def distinct_size(rate: float, args: argparse.Namespace) -> int:
    """Messages of one distinct-text run: ``--distinct-seconds`` worth at the cap, within
    [1,000, ``--distinct-n``]."""
    return max(1000, min(args.distinct_n, int(rate * args.distinct_seconds)))


def phase_distinct(procs: Processes, args: argparse.Namespace, workdir: Path,
                   rates: Sequence[float], concurrencies: Sequence[int]) -> list[SendRun]:
    """Every household its own amount, so every SMS its own text and its own SendSms call:
    one SQLite worker at each cap R and each concurrency. The queue of each size is
    built once and copied for each run."""
    runs: list[SendRun] = []
    queues: dict[int, str] = {}
    try:
        for rate in rates:
            size = distinct_size(rate, args)
            if size not in queues:
                queues[size] = sqlite_queue(workdir, f"distinct-{size}", size,
                                            distinct_amounts=True)
            for concurrency in concurrencies:
                url = sqlite_copy(workdir, queues[size], f"distinct-run-{size}-{concurrency}")
                try:
                    run = run_send(procs, args, f"distinct R {rate:g} c {concurrency}", url,
                                   rate, 1, "payout:%", concurrency=concurrency)
                finally:
                    sqlite_remove(url)
                runs.append(run)
                print(f"  ({run.label}: {run.steady / rate:.2f} R after the first second)",
                      flush=True)
    finally:
        for url in queues.values():
            sqlite_remove(url)
    return runs


def distinct_ratio(run: SendRun) -> float:
    """The figure judged for a distinct-text run: the steady rate (after the first
    second) when the run was long enough to have one, else the overall rate."""
    return (run.steady or run.achieved) / run.rate


def distinct_rated(run: SendRun) -> bool:
    """Whether the run's rate means something: it sent (nearly) its whole queue. A run
    that stopped early with messages put off for a retry has no meaningful rate; a few
    put off (a call refused twice) are shown, not held against the rate."""
    return run.check.lost <= max(1, run.messages // 100)


def distinct_met(run: SendRun) -> bool:
    return distinct_rated(run) and distinct_ratio(run) >= TARGET_RATIO


def print_distinct(runs: Sequence[SendRun]) -> None:
    print()
    print(f"5. Distinct texts: every household its own amount, so every SMS is its own "
          f"SendSms call (one number); one worker on SQLite, the fake capped at R; target "
          f">= {TARGET_RATIO:g} R, judged after the first second (both token buckets start "
          f"full: a short run's first second can take up to 2 R)")
    rows = []
    for run in runs:
        w = run.workers[0]
        ratio, c = distinct_ratio(run), run.check
        send_calls = w["step_calls"].get("send", 0)
        send_ms = 1000 * w["steps"].get("send", 0.0) / send_calls if send_calls else 0.0
        shown = int(ratio * 100) / 100  # truncated: 0.896 shows as 0.89, not 0.90 (MISSED)
        judged = (f"{shown:.2f} ({verdict(distinct_met(run))})" if distinct_rated(run)
                  else "- (MISSED: stopped early)")
        rows.append([
            f"{run.rate:g}", w["concurrency"], run.messages, f"{run.achieved:.0f}",
            f"{run.steady:.0f}", judged,
            f"{run.fake['calls']:,}", f"{send_ms:.1f}",
            f"{w['cpu'] / max(w['sent'], 1) * 1000:.2f}", f"{w['seconds']:.1f}",
            run.fake["throttled_calls"], c.delivered, c.queued_for_retry,
            c.lost - c.queued_for_retry, c.sent_twice, c.wrong_text])
    print(table(["R/s", "concurrency", "messages", "sent/s", "after 1st s", "ratio to R",
                 "SendSms calls", "send ms", "CPU ms/msg", "run() s", "throttled calls",
                 "delivered", "put off (retry)", "lost", "sent twice", "wrong text"], rows))
    print("  after 1st s = the rate after the first second of acceptances (it can exceed R "
          "while the second's worth both buckets saved up drains); send ms = mean latency of "
          "one SendSms call (`concurrency` in flight); CPU ms/msg = the worker's process time "
          "per message sent, the fake sharing the two cores; put off = rows queued for a "
          "later retry (not due before the run ended): more than 1% of the queue put off "
          "means the run stopped early, and its rate is not judged (MISSED)")
    by_rate: dict[float, list[int]] = {}
    for run in runs:
        if distinct_met(run):
            by_rate.setdefault(run.rate, []).append(run.workers[0]["concurrency"])
    reached = "; ".join(f"R {rate:g}: concurrency {min(c)}" for rate, c in by_rate.items())
    print(f"  lowest concurrency reaching {TARGET_RATIO:g} R: {reached or 'none'}")
    put_off = [run for run in runs if run.check.queued_for_retry]
    if put_off:
        aside = [run.label for run in put_off
                 if any("set aside" in text for w in run.workers for text in w["log"])]
        print(f"  put off ({', '.join(run.label for run in put_off)}): the fake answered "
              f"RequestLimitExceeded (the worker's limiter is set to the same R, and calls in "
              f"flight reach the fake unevenly) and refused the worker's one retry too, so "
              f"those messages wait for a retry (30 s later) that the run does not reach"
              + (f"; in {', '.join(aside)} three such failures in a row set the only "
                 f"provider aside ('set aside' in the log) and the rest of the queue was "
                 f"put off with them" if aside else "") + ".")
    for run in runs:
        for w in run.workers:
            print(f"  {w['name']}: {steps_text(w)}")
        problems = {**run.fake["problems"]}
        if problems or run.fake["bad_signatures"]:
            print(f"  fake ({run.label}): {run.fake['bad_signatures']} bad signatures, "
                  f"protocol problems: {problems}")
        for w in run.workers:
            if w["log"]:
                common = "; ".join(f"{n}x {text}" for text, n in w["log"].most_common(3))
                print(f"  log of {w['name']}: {sum(w['log'].values())} lines ({common})")


def phase_planning(workdir: Path, n: int) -> str:
    url = f"sqlite+aiosqlite:///{workdir / 'plan.db'}"
    started = time.perf_counter()
    insert_s = asyncio.run(prepare(url, n, "2026-11"))
    setup_s = time.perf_counter() - started
    plan_s, first, again = asyncio.run(timed_plan(url))
    queued, requeued = sum(first.queued.values()), sum(again.queued.values())
    print()
    print(f"1. Planning (SQLite, N = {n:,})")
    print(table(["step", "rows", "seconds", "rows/s", "result"], [
        ["initialise + bulk insert", n, f"{setup_s:.1f}", f"{n / insert_s:.0f}",
         f"insert {insert_s:.1f} s: beneficiaries (Vault-encrypted) + payout lines"],
        ["plan at 10:00 Beijing", queued, f"{plan_s:.2f}", f"{queued / plan_s:.0f}",
         first.summary()],
        ["plan again", requeued, "-", "-", again.summary()]]))
    once = requeued == 0 and queued == n
    print(f"  re-plan queued {requeued} new rows: {'exactly once' if once else 'NOT exactly once'}",
          flush=True)
    return url


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, help="beneficiaries to plan for (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="N = 10,000, smaller sends")
    parser.add_argument("--send-n", type=int, help="messages of the main SQLite send "
                        f"(default: all N, at most {DEFAULT_SEND_N:,})")
    parser.add_argument("--pg-n", type=int,
                        help=f"messages of each PostgreSQL run (default N/10, at most "
                             f"{DEFAULT_PG_N:,})")
    parser.add_argument("--rate", type=float, default=2000.0,
                        help="R: numbers a second the fake accepts, and the worker rate")
    parser.add_argument("--low-rate", type=float, default=150.0,
                        help="a second, reachable R to check the limiter (0: skip)")
    parser.add_argument("--batch", type=int, default=200, help="worker claim batch")
    parser.add_argument("--concurrency", type=int, default=32, help="worker concurrency")
    parser.add_argument("--stale-after", type=float, default=5.0,
                        help="the kill test's second worker sweeps claims older than this")
    parser.add_argument("--verify-every", type=int, default=10,
                        help="the fake recomputes the TC3 signature of one call in this many")
    parser.add_argument("--kill-at", choices=("in-flight", "random"), default="in-flight",
                        help="kill test: SIGKILL while the fake holds the answer to the call "
                             "that crossed half the queue (accepted, not yet recorded: the case "
                             "a restart must reconcile), or when the polled count crosses half "
                             "(wherever that lands)")
    parser.add_argument("--describe-rate", type=float, default=10.0,
                        help="DescribeSendRecordList calls a second the fake answers (Tencent "
                             "documents 10; 0: no cap)")
    parser.add_argument("--distinct-rates", type=floats,
                        help="caps R for the distinct-text runs, comma separated (default "
                             f"{fmt_list(DISTINCT_RATES)}; --quick "
                             f"{fmt_list(QUICK_DISTINCT_RATES)}; empty: skip)")
    parser.add_argument("--distinct-concurrency", type=ints,
                        help="worker concurrencies for the distinct-text runs (default "
                             f"{fmt_list(DISTINCT_CONCURRENCY)}; --quick "
                             f"{fmt_list(QUICK_DISTINCT_CONCURRENCY)})")
    parser.add_argument("--distinct-seconds", type=float,
                        help="each distinct-text run sends this many seconds' worth at its cap "
                             f"(default {DISTINCT_SECONDS:g}; --quick {QUICK_DISTINCT_SECONDS:g})")
    parser.add_argument("--distinct-n", type=int,
                        help=f"at most this many messages a distinct-text run (default "
                             f"{DISTINCT_N:,}; --quick {QUICK_DISTINCT_N:,})")
    parser.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL phases")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="profile a short extra send (auto: when the rate misses 0.9 R)")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.distinct_rates is None:
        args.distinct_rates = QUICK_DISTINCT_RATES if quick else DISTINCT_RATES
    if args.distinct_concurrency is None:
        args.distinct_concurrency = QUICK_DISTINCT_CONCURRENCY if quick else DISTINCT_CONCURRENCY
    if args.distinct_seconds is None:
        args.distinct_seconds = QUICK_DISTINCT_SECONDS if quick else DISTINCT_SECONDS
    if args.distinct_n is None:
        args.distinct_n = QUICK_DISTINCT_N if quick else DISTINCT_N
    n = args.n or (10_000 if args.quick else 100_000)
    send_n = min(args.send_n or min(n, DEFAULT_SEND_N), n)
    small_n = max(1, send_n // 10)
    pg_n = args.pg_n or max(1000, min(DEFAULT_PG_N, n // 10))
    low_n = max(1, int(args.low_rate * LOW_RATE_SECONDS))

    def terminated(_signum: int, _frame: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, terminated)
    workdir = Path(tempfile.mkdtemp(prefix="huimin-bench-notify-"))
    procs = Processes(mp.get_context("spawn"), workdir, tencent_templates(), args.describe_rate)
    began = time.perf_counter()
    try:
        print(f"bench.notify: N = {n:,} planned; SQLite sends {send_n:,} then {small_n:,}"
              + (f" (and {low_n:,} at R = {args.low_rate:g}/s)" if args.low_rate else "")
              + f"; PostgreSQL {'skipped' if args.no_pg else f'{pg_n:,} per run'}; "
              f"distinct texts at R = {fmt_list(args.distinct_rates) or 'skipped'}, "
              f"concurrency {fmt_list(args.distinct_concurrency)}; "
              f"R = {args.rate:g}/s; worker batch {args.batch}, concurrency "
              f"{args.concurrency}; {os.cpu_count()} CPUs, {load_text()}", flush=True)

        plan_url = phase_planning(workdir, n)

        # 2. one worker on SQLite ---------------------------------------------------------
        runs: list[SendRun] = []
        for size in (send_n, small_n):
            url = plan_url if size == n else sqlite_queue(workdir, f"send-{size}", size)
            runs.append(run_send(procs, args, f"sqlite {size:,}", url, args.rate, 1, "payout:%"))
        if args.low_rate:
            url = sqlite_queue(workdir, "low-rate", low_n)
            runs.append(run_send(procs, args, f"sqlite {low_n:,}, low R", url, args.low_rate,
                                 1, "payout:%"))
        print()
        print(f"2. Sending, one worker on SQLite (TencentSms -> Tencent-protocol fake capped "
              f"at R, in its own process; sent/s = accepted numbers / the fake's first-to-last "
              f"acceptance; target >= {TARGET_RATIO:g} R)")
        print_sends(runs)
        print_memory(runs[0], runs[1])
        print_checks([(run.label, run.check) for run in runs])
        if args.low_rate:
            print("  low R: R is within the worker's reach here, so this row checks the rate "
                  "limiter itself. Both token buckets (worker and fake) start full, one second's "
                  "worth, so a 10-second run may exceed R by up to ~10%.")
        throttled(runs)
        print(f"  ({load_text()})", flush=True)

        # 3. and 4. PostgreSQL ------------------------------------------------------------
        pg_runs: list[SendRun] = []
        if not args.no_pg:
            pg_url = f"{PG_SERVER}/{PG_DATABASE}"
            try:
                asyncio.run(prepare(pg_url, pg_n, "2026-11", reset_postgres=True))
                pg_plan_s, pg_first, _ = asyncio.run(timed_plan(pg_url))
            except Exception as exc:  # no server, no rights: report and go on
                print(f"\n3./4. PostgreSQL skipped: {type(exc).__name__}: {exc}")
            else:
                pg_runs.append(run_send(procs, args, f"postgres {pg_n:,}", pg_url, args.rate,
                                        2, "payout:%:2026-11"))
                print()
                print(f"3. Sending, two workers sharing one PostgreSQL queue ({PG_DATABASE}; "
                      f"{sum(pg_first.queued.values()):,} planned in {pg_plan_s:.1f} s; the "
                      f"workers share one rate schedule of R in send_rates)")
                print_sends(pg_runs)
                print_checks([(run.label, run.check) for run in pg_runs])
                throttled(pg_runs)
                print(f"  ({load_text()})", flush=True)
                asyncio.run(add_payouts_and_plan(pg_url, pg_n, "2026-12"))
                print_kill(run_kill(procs, args, pg_url, "payout:%:2026-12"), args)
                print(f"  ({load_text()})", flush=True)

        if args.distinct_rates:
            distinct = phase_distinct(procs, args, workdir, args.distinct_rates,
                                      args.distinct_concurrency)
            print_distinct(distinct)
            print(f"  ({load_text()})", flush=True)

        ratio = runs[0].achieved / runs[0].rate
        if args.profile == "always" or (args.profile == "auto" and ratio < TARGET_RATIO):
            size = min(small_n, PROFILE_N)
            url = sqlite_queue(workdir, "profile", size)
            run = run_send(procs, args, f"sqlite {size:,} (profiled)", url, args.rate, 1,
                           "payout:%", profile=workdir / "worker.prof")
            print()
            print(f"Profile: the sqlite send reached {ratio:.2f} R; a profiled run of "
                  f"{size:,} messages ({run.achieved:.0f}/s under cProfile):")
            print_profile(workdir / "worker.prof")
        print()
        print(f"total {time.perf_counter() - began:.0f} s")
    except (KeyboardInterrupt, SystemExit):
        print("\ninterrupted: stopping the processes this benchmark started", file=sys.stderr)
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        procs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def print_kill(kill: KillRun, args: argparse.Namespace) -> None:
    print()
    when = ("while the fake held its answer to the call that crossed half the queue"
            if args.kill_at == "in-flight" else "once the polled count crossed half")
    print(f"4. Kill test on PostgreSQL ({kill.messages:,} messages): SIGKILL {when}, "
          f"after {kill.killed_at:,} were accepted; then a second worker with --stale-after "
          f"{args.stale_after:g}")
    states = ", ".join(f"{k} {v}" for k, v in sorted(kill.states_after_kill.items()))
    second, fake = kill.second, kill.fake
    sending = kill.states_after_kill.get("sending", 0)
    print(f"  outbox right after the kill: {states}; of the {sending} rows in sending, "
          f"{kill.in_flight_sent} had been accepted by the fake (sent, not recorded: sent "
          f"again unless the restart asks the provider)")
    reconcile = ""
    if second.get("step_calls", {}).get("reconcile"):
        reconcile = (f"; reconcile() {second['steps']['reconcile']:.1f} s in "
                     f"{second['step_calls']['reconcile']} calls")
    print(f"  second worker: swept {second['swept']} stale claims, sent {second['sent']:,} "
          f"in {second['seconds']:.1f} s{reconcile}; whole test {kill.wall:.1f} s; the fake "
          f"accepted {fake['accepted']:,} numbers ({fake['throttled_calls']} throttled calls)")
    errors = ", ".join(f"{k} {v}" for k, v in sorted(fake["describe_errors"].items()))
    print(f"  DescribeSendRecordList: {fake['describe_calls']} calls (capped at "
          f"{args.describe_rate:g}/s: {fake['describe_throttled']} answered "
          f"RequestLimitExceeded), {fake['describe_found']} found records, "
          f"{fake['describe_records']} records answered; errors: {errors or 'none'}")
    print_checks([("kill test", kill.check)])
    c = kill.check
    left = c.states.get("sending", 0)
    if left:
        print(f"  {left} rows still in sending after the second worker: a row whose lookup "
              f"could not be answered (e.g. DescribeSendRecordList throttled) waits for the "
              f"next sweep, which run(once=True) ended before reaching (accepted by the "
              f"fake, not marked sent: {c.delivered_not_marked})")
    if not c.sent_twice:
        how = ("the kill fell between a chunk's record and the next send" if not
               kill.in_flight_sent else f"none of the {kill.in_flight_sent} sent but unrecorded "
               "was sent again")
        print(f"  sent twice: none ({how})")
        return
    has_reconcile = second.get("has_reconcile")
    print(f"  sent twice: {c.sent_twice} messages reached their phone twice ({c.extra_sends} "
          f"extra SMS), as the fake saw them, of the {kill.in_flight_sent} in flight at the "
          f"kill (the killed worker's chunk: it records outcomes one chunk of `concurrency` "
          f"messages at a time), handed to the provider but not yet marked sent; "
          + ("the restarted worker's reconcile() did not recognise them." if has_reconcile
             else "after the sweep they were sent again (this worker has no reconcile()).")
          )


if __name__ == "__main__":
    sys.exit(main())
