"""The real ``/wechat`` webhook under concurrent load: ``python -m bench.webhook``.

Measures, in one run and on the same machine:

* a bare aiohttp endpoint that only reads the body, parses the XML and echoes a
  TextReply-shaped answer (the floor: what aiohttp + XML cost by themselves);
* the bot (``bot.app.create_app``) on a fresh SQLite database with the shipped
  FAQ;
* the bot with a synthetic FAQ (``bench.synthetic``) written into its database.

Each server runs alone in its own process (multiprocessing, spawn) on
127.0.0.1, so the load generator in this process never shares its event loop;
servers run one after another so they do not compete for the two cores. The
load is signed WeChat text messages (``tests.wechat``) with unique MsgIds,
varied openids and questions from ``tests/data/devset.yaml``, sent by N
concurrent clients (closed loop: each client sends its next request when the
previous reply arrives). Prints figures only; nothing asserts on timing.

``--versus-naive``: a naive FAQ bot (:func:`_naive_app`: wechatpy, rapidfuzz
``extractOne``/``WRatio``, one sqlite3 commit per message) against the bot on SQLite,
alternating ``--repeat`` times in one run: closed loop, then open loop (messages arriving
at ``--rate`` per second, latency counted from when each was due), with the server's CPU
per message. ``--workers 1,2``: ``huimin serve --workers N`` on PostgreSQL + Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.report import table
from tests.wechat import TOKEN, signed_query, text_xml, urlq

ROOT = Path(__file__).resolve().parent.parent
DEVSET = ROOT / "tests" / "data" / "devset.yaml"
TARGET_RATIO = 0.40
TARGET_P99_MS = 50.0
READY_TIMEOUT = 180.0


# ----- servers (each in its own spawned process) -------------------------------
def _bare_app() -> Any:
    from aiohttp import web
    from defusedxml.ElementTree import fromstring

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        root = fromstring(body)
        xml = ("<xml>"
               f"<ToUserName><![CDATA[{root.findtext('FromUserName') or ''}]]></ToUserName>"
               f"<FromUserName><![CDATA[{root.findtext('ToUserName') or ''}]]></FromUserName>"
               f"<CreateTime>{int(time.time())}</CreateTime>"
               "<MsgType><![CDATA[text]]></MsgType>"
               f"<Content><![CDATA[{root.findtext('Content') or ''}]]></Content>"
               "</xml>")
        return web.Response(text=xml, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", receive)
    return app


def _naive_app(database_url: str | None) -> Any:
    """The naive FAQ bot the issue compares against, written as one would at first:
    wechatpy checks the signature and parses, rapidfuzz ``extractOne`` with ``WRatio``
    over the FAQ's own phrasings, every question logged with ``sqlite3`` (its default
    settings) and one commit per message, the answer replied. No normalisation,
    conversation state, dedup or deadline."""
    import sqlite3

    from aiohttp import web
    from rapidfuzz import fuzz, process
    from wechatpy import parse_message
    from wechatpy.exceptions import InvalidSignatureException
    from wechatpy.replies import TextReply
    from wechatpy.utils import check_signature

    from content import FAQ_DIR

    phrasings: list[str] = []
    answers: list[str] = []
    for path in sorted(FAQ_DIR.glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")) or ():
            for phrasing in [entry["question"], *entry.get("alternatives", ())]:
                phrasings.append(str(phrasing))
                answers.append(str(entry["answer"]).strip())
    assert database_url is not None
    log = sqlite3.connect(database_url.split("///", 1)[1].replace(".db", "-naive.db"))
    log.execute("CREATE TABLE IF NOT EXISTS questions (id INTEGER PRIMARY KEY, openid TEXT,"
                " text TEXT, answered TEXT, asked_at REAL)")
    log.commit()

    async def receive(request: web.Request) -> web.Response:
        query = request.query
        try:
            check_signature(TOKEN, query.get("signature", ""), query.get("timestamp", ""),
                            query.get("nonce", ""))
        except InvalidSignatureException:
            raise web.HTTPForbidden() from None
        message = parse_message(await request.text())
        text = getattr(message, "content", "") or ""
        best = process.extractOne(text, phrasings, scorer=fuzz.WRatio)
        answer = answers[best[2]] if best and best[1] >= 60 else "对不起，没听懂"
        log.execute("INSERT INTO questions (openid, text, answered, asked_at) "
                    "VALUES (?, ?, ?, ?)", (message.source, text, answer[:20], time.time()))
        log.commit()
        xml = TextReply(message=message, content=answer).render()
        return web.Response(text=xml, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", receive)
    return app


async def _serve(kind: str, database_url: str | None, ready: Any, stop: Any,
                 redis_url: str | None = None) -> None:
    from aiohttp import web

    if kind == "bot":
        from huimin.settings import Settings
        from huimin.wiring.apps import create_app

        assert database_url is not None
        app = create_app(Settings(database_url=database_url, wechat_token=TOKEN,
                                  log_level="WARNING", redis_url=redis_url))
    elif kind == "naive":
        app = _naive_app(database_url)
    else:
        app = _bare_app()
    runner = web.AppRunner(app, access_log=None)  # as `huimin serve` runs it
    try:
        await runner.setup()  # the bot builds its matcher here
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.put(("ok", runner.addresses[0][1], os.getpid()))
        while not stop.is_set():
            await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()


def serve_process(kind: str, database_url: str | None, ready: Any, stop: Any,
                  redis_url: str | None = None) -> None:
    """Entry point of a server process."""
    logging.basicConfig(level=logging.WARNING,
                        format=f"[{kind} server] %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(kind, database_url, ready, stop, redis_url))
    except BaseException:
        ready.put(("error", traceback.format_exc(), os.getpid()))
        raise


@dataclass
class Server:
    kind: str
    process: Any
    stop: Any
    port: int = 0
    pid: int = 0


def start_server(ctx: Any, kind: str, database_url: str | None,
                 redis_url: str | None = None) -> Server:
    """Start a server process and wait until it listens (stopping it again on failure)."""
    ready, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=serve_process,
                          args=(kind, database_url, ready, stop, redis_url),
                          name=f"bench-{kind}", daemon=True)
    server = Server(kind, process, stop)
    process.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                status, value, pid = ready.get(timeout=0.5)
                break
            except queue.Empty:
                if not process.is_alive():
                    raise RuntimeError(f"{kind} server exited with code {process.exitcode}"
                                       ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} server not ready after {READY_TIMEOUT:.0f} s"
                                       ) from None
        if status != "ok":
            raise RuntimeError(f"{kind} server failed to start:\n{value}")
    except BaseException:
        stop_server(server)
        raise
    server.port, server.pid = int(value), int(pid)
    return server


def stop_server(server: Server) -> None:
    """Ask the server to shut down cleanly; terminate, then kill, if it does not."""
    process = server.process
    if process.pid is None:
        return
    server.stop.set()
    process.join(20)
    if process.is_alive():
        process.terminate()
        process.join(5)
    if process.is_alive():
        process.kill()
        process.join(5)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# ----- databases ---------------------------------------------------------------
async def _prepare_database(url: str, extra_entries: list[Any]) -> dict[str, int]:
    from content.load import load_content_files
    from content.queries import sync_shipped_content
    from huimin.cli import initialise
    from huimin.db import Database
    from huimin.settings import Settings

    counts = await initialise(Settings(database_url=url))
    if extra_entries:
        db = Database(url)
        try:
            async with db.session() as session:
                counts = await sync_shipped_content(
                    session, [("synthetic.yaml", e) for e in extra_entries],
                    load_content_files().dictionary)
        finally:
            await db.dispose()
    return counts


def prepare_database(path: Path, extra_entries: list[Any]) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(_prepare_database(url, extra_entries))
    return url


# ----- load generator ----------------------------------------------------------
@dataclass
class Result:
    requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    no_reply: int = 0  # 200 with "success": the reply missed the deadline
    client_cpu: float = 0.0
    server_cpu: float | None = None

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]


class Messages:
    """Signed text messages with unique MsgIds, varied openids, devset questions."""

    def __init__(self, questions: list[str], openids: int = 500) -> None:
        self.questions = questions
        self.openids = openids
        self.sent = 0

    def batch(self, base: str, count: int) -> list[tuple[str, bytes]]:
        out = []
        for _ in range(count):
            i = self.sent
            self.sent += 1
            openid = f"bench-openid-{i % self.openids:04d}"
            query = signed_query(openid=openid)
            body = text_xml(self.questions[i % len(self.questions)], openid=openid,
                            msg_id=7_000_000_000_000_000 + i)
            out.append((f"{base}?{urlq(query)}", body.encode("utf-8")))
        return out


async def _post_once(session: Any, url: str, body: bytes, since: float,
                     result: Result) -> None:
    """Post one signed message and count it in ``result``: its status, its latency
    from ``since`` (when it was sent, or due), and whether the reply was bare success."""
    import aiohttp

    try:
        async with session.post(url, data=body,
                                headers={"Content-Type": "text/xml; charset=utf-8"}) as response:
            reply = await response.read()
            status = str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reply, status = b"", type(exc).__name__
    result.latencies_ms.append((time.perf_counter() - since) * 1000.0)
    result.statuses[status] += 1
    if status == "200" and reply.strip() == b"success":
        result.no_reply += 1


async def drive(session: Any, requests: list[tuple[str, bytes]], concurrency: int) -> Result:
    """Send ``requests`` with ``concurrency`` closed-loop clients."""

    result = Result(requests=len(requests))
    pending = iter(requests)
    async def client() -> None:
        for url, body in pending:
            await _post_once(session, url, body, time.perf_counter(), result)

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu
    return result


async def drive_open(session: Any, requests: list[tuple[str, bytes]], rate: float) -> Result:
    """Send ``requests`` at a fixed arrival rate (open loop: request i leaves at
    ``i / rate`` seconds whether or not earlier ones were answered); each latency is
    counted from the moment its request was due, so a stalled server is not hidden by
    the load generator waiting for it."""

    result = Result(requests=len(requests))
    async def one(url: str, body: bytes, due: float) -> None:
        await _post_once(session, url, body, due, result)

    cpu = time.process_time()
    started = time.perf_counter()
    tasks = []
    for i, (url, body) in enumerate(requests):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(url, body, due)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu
    return result


async def load(port: int, pid: int, messages: Messages, warmup: int, count: int,
               concurrency: int, light: int) -> tuple[Result, Result | None]:
    import aiohttp

    base = f"http://127.0.0.1:{port}/wechat"
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await drive(session, messages.batch(base, warmup), concurrency)
        batch = messages.batch(base, count)  # signed just before sending: inside the window
        before = cpu_seconds(pid)
        loaded = await drive(session, batch, concurrency)
        after = cpu_seconds(pid)
        if before is not None and after is not None:
            loaded.server_cpu = after - before
        quiet = await drive(session, messages.batch(base, light), 1) if light else None
    return loaded, quiet


# ----- report ------------------------------------------------------------------
def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _redis_ready(url: str) -> bool:
    """Whether Redis answers at ``url``; its huimin keys are cleared for a fresh run."""
    async def check() -> bool:
        from redis.asyncio import Redis

        redis = Redis.from_url(url, socket_connect_timeout=1)
        try:
            keys = [k async for k in redis.scan_iter("huimin:*")]
            if keys:
                await redis.delete(*keys)
            return True
        except Exception:
            return False
        finally:
            await redis.aclose()

    return asyncio.run(check())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per run")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per run")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent clients")
    parser.add_argument("--entries", type=int, default=1000, help="synthetic FAQ size")
    parser.add_argument("--light", type=int, default=200,
                        help="requests sent afterwards by a single client (0: skip)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14",
                        help="also measure the bot with its shared state in this Redis "
                             "(empty: skip)")
    parser.add_argument("--workers", default="",
                        help="instead: `huimin serve --workers N` for each N given (e.g. "
                             "1,2) on --database-url (PostgreSQL) and --redis")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL for --workers (its schema is (re)initialised)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per N with --workers")
    parser.add_argument("--versus-naive", action="store_true",
                        help="instead: the naive FAQ bot and huimin on SQLite, alternating "
                             "--repeat times, closed loop then open loop at --rate")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="open-loop arrival rate (messages/s) with --versus-naive")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="open-loop duration with --versus-naive")
    args = parser.parse_args(argv)
    if args.versus_naive:
        return versus_naive_main(args)
    if args.workers:
        return workers_main(args)

    from bench.synthetic import synthetic_faq

    with DEVSET.open(encoding="utf-8") as fh:
        questions = [str(item["q"]) for item in yaml.safe_load(fh)]
    ctx = mp.get_context("spawn")
    workdir = Path(tempfile.mkdtemp(prefix="huimin-bench-"))
    servers: list[Server] = []
    measured: list[tuple[str, str, str, float, Result, Result | None]] = []
    try:
        started = time.perf_counter()
        shipped_url = prepare_database(workdir / "shipped.db", [])
        generated = [e for e in synthetic_faq(args.entries) if e.source == "synthetic"]
        synthetic_url = prepare_database(workdir / "synthetic.db", generated)
        print(f"databases ready in {time.perf_counter() - started:.1f} s "
              f"(temp dir {workdir}); {args.concurrency} clients, {args.warmup} warm-up + "
              f"{args.requests} measured requests per endpoint, then {args.light} from "
              f"one client", flush=True)
        runs = [("bare aiohttp + XML", "bare", None, "-", None),
                ("bot, shipped FAQ", "bot", shipped_url, "shipped", None),
                (f"bot, {args.entries}-entry FAQ", "bot", synthetic_url, str(args.entries),
                 None)]
        if args.redis and _redis_ready(args.redis):
            runs += [("bot + Redis, shipped FAQ", "bot", shipped_url, "shipped", args.redis),
                     (f"bot + Redis, {args.entries}-entry FAQ", "bot", synthetic_url,
                      str(args.entries), args.redis)]
        messages = Messages(questions)
        for label, kind, url, faq, redis_url in runs:
            started = time.perf_counter()
            server = start_server(ctx, kind, url, redis_url)
            servers.append(server)
            boot = time.perf_counter() - started
            try:
                loaded, quiet = asyncio.run(load(server.port, server.pid, messages, args.warmup,
                                                 args.requests, args.concurrency, args.light))
            finally:
                stop_server(server)
            measured.append((label, kind, faq, boot, loaded, quiet))
            print(f"  done: {label}", flush=True)
    finally:
        for server in servers:
            stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)

    bare_rps = measured[0][4].rps
    rows, summaries = [], []
    for label, kind, faq, boot, r, quiet in measured:
        p50, p95, p99 = r.percentile(50), r.percentile(95), r.percentile(99)
        ratio = r.rps / bare_rps if bare_rps else 0.0
        server_ms = f"{1000 * r.server_cpu / r.requests:.2f}" if r.server_cpu is not None else "?"
        rows.append([
            label, faq, f"{boot:.1f}", r.requests, f"{r.seconds:.2f}", f"{r.rps:.0f}",
            "-" if kind == "bare" else f"{ratio:.2f} (>= {TARGET_RATIO:.2f}: "
                                       f"{_verdict(ratio >= TARGET_RATIO)})",
            f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}",
            "-" if kind == "bare" else f"< {TARGET_P99_MS:g}: {_verdict(p99 < TARGET_P99_MS)}",
            r.errors, r.no_reply, server_ms, f"{1000 * r.client_cpu / r.requests:.2f}"])
        line = (f"{label}: {r.rps:.0f} requests/s, p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                f"p99 {p99:.1f} ms, {r.errors} errors, {r.no_reply} late ('success') replies")
        if r.errors:
            line += f" {dict(r.statuses)}"
        if quiet is not None:
            line += (f"; one client: {quiet.rps:.0f} requests/s, "
                     f"p50 {quiet.percentile(50):.1f} ms, p99 {quiet.percentile(99):.1f} ms")
        summaries.append(line)
    print()
    print(table(["endpoint", "FAQ", "start s", "requests", "seconds", "req/s", "ratio to bare",
                 "p50 ms", "p95 ms", "p99 ms", "p99 target ms", "errors", "late",
                 "server CPU ms/req", "client CPU ms/req"], rows))
    print("(late: 200 with 'success', the reply missed the deadline and was queued; CPU: process "
          "time during the measured requests, all threads. With closed-loop clients, latency "
          "under load is mostly queueing: mean latency ~ clients / throughput.)")
    print()
    for line in summaries:
        print(line)
    for label, kind, _faq, _boot, r, _quiet in measured:
        if kind == "bot":
            ratio = r.rps / bare_rps if bare_rps else 0.0
            print(f"throughput ratio {label} / bare: {ratio:.2f} "
                  f"(target >= {TARGET_RATIO:.2f}: {_verdict(ratio >= TARGET_RATIO)})")
    return 0


# ----- the naive bot against huimin, in the same run ---------------------------------
TARGET_NAIVE_RATIO = 1.0


def versus_naive_main(args: argparse.Namespace) -> int:
    """The naive FAQ bot and ``huimin serve`` (SQLite, one process each), alternating
    ``--repeat`` times: closed loop (``--concurrency`` clients back to back), then open
    loop (``--rate`` messages a second arriving at a steady rate for ``--seconds``)."""
    with DEVSET.open(encoding="utf-8") as fh:
        questions = [str(item["q"]) for item in yaml.safe_load(fh)]
    ctx = mp.get_context("spawn")
    workdir = Path(tempfile.mkdtemp(prefix="huimin-bench-"))
    messages = Messages(questions)
    kinds = ["naive", "bot"]
    closed: dict[str, list[Result]] = {k: [] for k in kinds}
    opened: dict[str, list[Result]] = {k: [] for k in kinds}
    try:
        url = prepare_database(workdir / "shipped.db", [])
        print(f"{args.repeat} rounds; each: {args.warmup} warm-up + {args.requests} from "
              f"{args.concurrency} clients, then {args.rate:g}/s for {args.seconds:g} s "
              f"(open loop)", flush=True)
        for run in range(args.repeat):
            for kind in kinds:
                server = start_server(ctx, kind, url)

                async def measure(port: int, pid: int) -> tuple[Result, Result]:
                    import aiohttp

                    base = f"http://127.0.0.1:{port}/wechat"
                    timeout = aiohttp.ClientTimeout(total=60)
                    connector = aiohttp.TCPConnector(limit=args.concurrency)
                    async with aiohttp.ClientSession(connector=connector,
                                                     timeout=timeout) as session:
                        await drive(session, messages.batch(base, args.warmup),
                                    args.concurrency)
                        batch = messages.batch(base, args.requests)
                        before = cpu_seconds(pid)
                        shut = await drive(session, batch, args.concurrency)
                        after = cpu_seconds(pid)
                        if before is not None and after is not None:
                            shut.server_cpu = after - before
                    count = int(args.rate * args.seconds)
                    connector = aiohttp.TCPConnector(limit=0)
                    async with aiohttp.ClientSession(connector=connector,
                                                     timeout=timeout) as session:
                        await drive_open(session, messages.batch(base, int(args.rate)),
                                         args.rate)
                        open_ = await drive_open(session, messages.batch(base, count),
                                                 args.rate)
                    return shut, open_

                try:
                    shut, open_ = asyncio.run(measure(server.port, server.pid))
                finally:
                    stop_server(server)
                closed[kind].append(shut)
                opened[kind].append(open_)
                cpu = (f", {1000 * shut.server_cpu / shut.requests:.2f} ms CPU/message"
                       if shut.server_cpu is not None else "")
                print(f"  round {run + 1}, {kind:5}: {shut.rps:.0f} req/s closed loop "
                      f"(p50 {shut.percentile(50):.1f} ms{cpu}); {args.rate:g}/s open loop: "
                      f"p50 {open_.percentile(50):.1f} ms, p99 {open_.percentile(99):.1f} ms, "
                      f"{shut.errors + open_.errors} errors, "
                      f"{shut.no_reply + open_.no_reply} late; load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = [b.rps / n.rps for n, b in zip(closed["naive"], closed["bot"], strict=True)]
    rows = []
    for kind in kinds:
        rows.append([kind, " / ".join(f"{r.rps:.0f}" for r in closed[kind]),
                     " / ".join(f"{1000 * r.server_cpu / r.requests:.2f}"
                                if r.server_cpu is not None else "?" for r in closed[kind]),
                     " / ".join(f"{r.percentile(50):.1f}" for r in opened[kind]),
                     " / ".join(f"{r.percentile(99):.1f}" for r in opened[kind]),
                     sum(r.errors for r in closed[kind] + opened[kind]),
                     sum(r.no_reply for r in closed[kind] + opened[kind])])
    print()
    print(table(["server", f"req/s, {args.concurrency} clients", "server CPU ms/message",
                 f"p50 ms at {args.rate:g}/s",
                 f"p99 ms at {args.rate:g}/s", "errors", "late"], rows))
    worst_p99 = max(r.percentile(99) for r in opened["bot"])
    print(f"huimin / naive throughput, per round: {' / '.join(f'{r:.2f}' for r in ratios)} "
          f"(target >= {TARGET_NAIVE_RATIO:.1f}: "
          f"{_verdict(statistics.median(ratios) >= TARGET_NAIVE_RATIO)} on the median)")
    print(f"huimin p99 at {args.rate:g}/s: worst round {worst_p99:.1f} ms (target <= "
          f"{TARGET_P99_MS:g}: {_verdict(worst_p99 <= TARGET_P99_MS)})")
    return 0


# ----- several workers (huimin serve --workers N) -------------------------------------
def workers_main(args: argparse.Namespace) -> int:
    """1 vs N workers on one port: ``huimin serve --workers N`` on PostgreSQL + Redis,
    started as a deployment starts it; runs alternate between the worker counts."""
    import signal
    import socket
    import subprocess

    if not args.database_url.startswith("postgresql") or not args.redis:
        print("--workers needs --database-url postgresql+asyncpg://… and --redis redis://…")
        return 2
    counts = [int(n) for n in args.workers.split(",")]
    with DEVSET.open(encoding="utf-8") as fh:
        questions = [str(item["q"]) for item in yaml.safe_load(fh)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIMIN_")}
    env.update(HUIMIN_DATABASE_URL=args.database_url, HUIMIN_REDIS_URL=args.redis,
               HUIMIN_WECHAT_TOKEN=TOKEN, HUIMIN_LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "-m", "huimin.cli", "init"], env=env, check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    messages = Messages(questions)
    results: dict[int, list[Result]] = {n: [] for n in counts}

    async def ready(port: int, workers: int) -> None:
        import aiohttp

        seen: set[str] = set()
        deadline = time.monotonic() + READY_TIMEOUT
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)) as http:
            while len(seen) < workers and time.monotonic() < deadline:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            seen.add(response.headers.get("X-Huimin-Worker", "1"))
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
        if len(seen) < workers:
            raise RuntimeError("the server did not come up")

    async def measure(port: int) -> Result:
        import aiohttp

        base = f"http://127.0.0.1:{port}/wechat"
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            await drive(session, messages.batch(base, args.warmup), args.concurrency)
            return await drive(session, messages.batch(base, args.requests), args.concurrency)

    for run in range(args.repeat):
        for workers in counts:
            _redis_ready(args.redis)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = subprocess.Popen(
                [sys.executable, "-m", "huimin.cli", "serve", "--workers", str(workers),
                 "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
            try:
                asyncio.run(ready(port, workers))
                result = asyncio.run(measure(port))
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(120)
            results[workers].append(result)
            print(f"  run {run + 1}, {workers} worker(s): {result.rps:.0f} req/s, "
                  f"p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms, "
                  f"{result.errors} errors, {result.no_reply} late, load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    one = statistics.median(r.rps for r in results[counts[0]])
    for workers in counts:
        rates = [r.rps for r in results[workers]]
        median = statistics.median(rates)
        rows.append([workers, " / ".join(f"{r:.0f}" for r in rates), f"{median:.0f}",
                     f"{median / one:.2f}",
                     f"{statistics.median(r.percentile(99) for r in results[workers]):.0f}"])
    print()
    print(table(["workers", "req/s per run", "median req/s", f"ratio to {counts[0]}",
                 "median p99 ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
