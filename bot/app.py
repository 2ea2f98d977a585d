"""Build the bot's aiohttp application from settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from bot.dialog import Bot, Snapshot
from bot.handoff import HandoffDesk
from bot.status import LOCKOUT_PREFIXES, StatusDesk
from bot.store import ConversationStore, MessageLedger
from bot.webhook import WeChatEndpoint
from bot.writes import WRITE_DELAY, Writer
from content.guide import Guide
from content.load import load_county
from content.queries import current_revision, load_published
from huimin import metrics
from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import Vault
from huimin.settings import Settings, require_wechat
from notify.claims import outbox_depth
from notify.models import LateReply
from notify.receipts import ProviderCallbacks
from notify.service import NotifierStores, build_worker

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
BOT = web.AppKey("bot", Bot)
ENDPOINT = web.AppKey("endpoint", WeChatEndpoint)
CALLBACKS = web.AppKey("callbacks", ProviderCallbacks)
REDIS = web.AppKey("redis", object)
# The process's group-commit and write-behind writer (bot.writes).
WRITER = web.AppKey("writer", Writer)
# Set by ``huimin serve --workers N``: this worker's number, sent as X-Huimin-Worker.
WORKER = web.AppKey("worker", int)
READY_TIMEOUT = 2.0  # seconds each /readyz check may take
RELOAD_SECONDS = 3.0
# Names of this process's own background tasks (so a test can tell their work apart).
COURIER_TASK = "huimin:courier"
CONTENT_TASK = "huimin:content"


class ContentMissing(RuntimeError):
    """The database has no FAQ content yet."""


async def load_snapshot(db: Database, county: dict[str, Any], guide: Guide) -> Snapshot:
    """Read the published content and build a matcher for it (off the event loop)."""
    try:
        async with db.session() as session:
            content = await load_published(session)
    except DBAPIError as exc:
        raise ContentMissing(
            "the database has no Huimin schema (or cannot be read): run `huimin init` first"
        ) from exc
    if not content.entries:
        raise ContentMissing("the database has no FAQ content: run `huimin init` first")
    snapshot = await asyncio.to_thread(Snapshot.build, content, county, guide)
    snapshot.matcher = metrics.BandWatch(snapshot.matcher)  # type: ignore[assignment]
    return snapshot


def settle_heap(reloaded: bool = False) -> None:
    """Keep the matcher's few hundred thousand long-lived objects out of the cyclic
    garbage collector's full passes (``gc.freeze``): each pass over them stops the
    event loop for about 150 ms on the project's machine, and under load one came
    every few seconds, right into the reply-time p99. After a content reload the
    previous snapshot is let go first (one full pass, off the hot path)."""
    if reloaded:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


async def _follow_content(app: web.Application) -> None:
    """Pick up published content changes from any process within a few seconds (and
    write the answered-question count on the same beat)."""
    bot, db = app[BOT], app[DATABASE]
    while True:
        await asyncio.sleep(RELOAD_SECONDS)
        try:
            await bot.answered.flush(db)
            async with db.session() as session:
                revision = await current_revision(session)
            if revision != bot.snapshot.revision:
                bot.snapshot = await load_snapshot(db, dict(bot.county), bot.guide)
                settle_heap(reloaded=True)
                log.info("content revision %s loaded", revision)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("content reload failed; still answering from revision %s",
                          bot.snapshot.revision)


async def _demo_notifier(settings: Settings, stores: NotifierStores,
                         county: dict[str, Any]) -> None:
    """The demo runs the notifier in-process: plan, then send what is due, every few
    seconds (a deployment runs `huimin notify plan` on a timer and `huimin notify run`)."""
    from notify.plan import plan
    from notify.service import quiet_hours, recheck_offsets

    db = stores.db
    worker = build_worker(settings, county, stores)
    while True:
        try:
            report = await plan(db, quiet=quiet_hours(settings),
                                recheck_offsets=recheck_offsets(settings))
            if sum(report.queued.values()):
                log.info("demo notifier: %s", report.summary())
            summary = await worker.run(once=True)
            if summary.sent:
                log.info("demo notifier: %s", summary.text())
                worker.summary = type(summary)()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("demo notifier round failed")
        await asyncio.sleep(5)


async def _run_courier(courier: Any) -> None:
    """Send urgent outbox messages (verification codes) and late replies from this
    process as soon as they are queued; a failed round (database away) is retried."""
    while True:
        try:
            await courier.run(idle=5.0)
            return  # stopped
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("urgent-message courier failed; restarting in 5 s")
            await asyncio.sleep(5)


class Backing(Protocol):
    """What the composition root (:class:`huimin.wiring.resources.Backing`) hands the
    bot: the database, Redis (None without it) and the stores it put on one or the
    other. It opens and closes them; the bot only uses them."""

    db: Database
    redis: Any

    def ledger(self, writer: Writer, clock: Callable[[], datetime]) -> MessageLedger: ...

    def conversations(self, writer: Writer,
                      clock: Callable[[], datetime]) -> ConversationStore: ...

    def lockouts(self) -> Any: ...

    async def forget_old(self, ledger: Any, lockouts: Any, lockout_prefixes: Sequence[str],
                         now: datetime) -> None: ...

    def notifier(self) -> NotifierStores: ...


def _resources(settings: Settings, backing: Backing,  # type: ignore[no-untyped-def]
               clock: Callable[[], datetime], write_delay: float):
    async def resources(app: web.Application) -> AsyncIterator[None]:
        db, redis = backing.db, backing.redis
        writer = Writer(db, delay=write_delay)
        writer.start()
        ledger: Any = backing.ledger(writer, clock)
        conversations = backing.conversations(writer, clock)
        lockouts = backing.lockouts()
        await backing.forget_old(ledger, lockouts, LOCKOUT_PREFIXES, clock())
        ledger = metrics.CountingLedger(ledger)
        guide = Guide.load()
        county = load_county(settings.county_file)
        snapshot = await load_snapshot(db, county, guide)
        settle_heap()
        bot = Bot(snapshot=snapshot, guide=guide, county=county,
                  conversations=conversations, db=db, writes=writer)
        if not settings.secret_key:
            log.warning("HUIMIN_SECRET_KEY is not set: the status lookup is switched off")
        vault = (Vault(settings.secret_key, settings.secret_key_previous)
                 if settings.secret_key else None)
        background = []
        courier, courier_task = None, None
        if vault is not None:
            # Every bot process sends urgent messages itself: a code must not wait for
            # the notifier's next round (claims are safe across processes).
            courier = build_worker(settings, county, backing.notifier(), urgent_only=True,
                                   name=f"{socket.gethostname()}:{os.getpid()}:courier",
                                   clock=clock)
            courier_task = asyncio.create_task(_run_courier(courier), name=COURIER_TASK)
            background.append(courier_task)
        bot.status = StatusDesk(db=db, vault=vault, lockouts=lockouts, county=county,
                                say=bot.say, courier=courier.wake if courier else None,
                                clock=clock)
        bot.handoff = HandoffDesk(db=db, county=county, say=bot.say,
                                  conversations=conversations, clock=clock, writes=writer)
        app[CALLBACKS] = ProviderCallbacks(db, vault, settings.callback_token)
        if settings.demo and vault is not None:
            background.append(asyncio.create_task(
                _demo_notifier(settings, backing.notifier(), county)))

        async def deliver_late(openid: str, text: str) -> None:
            # Sent as a customer-service message by the notifier; kept until then.
            async with db.session() as session:
                session.add(LateReply(openid=openid, text=text))
            log.warning("a reply missed WeChat's deadline and was queued for later delivery")
            metrics.LATE_REPLIES.inc()
            if courier is not None:
                courier.wake()

        endpoint = WeChatEndpoint(
            settings.wechat_token or "", metrics.counting_replies(bot.reply_for), ledger,
            appid=settings.wechat_appid, aes_key=settings.wechat_aes_key,
            replay_window=settings.replay_window, reply_deadline=settings.reply_deadline,
            max_body_bytes=settings.max_body_bytes, deliver_late=deliver_late,
            fallback=bot.say("busy.j2"),
        )
        app[DATABASE], app[BOT], app[ENDPOINT], app[REDIS] = db, bot, endpoint, redis
        app[WRITER] = writer
        background.append(asyncio.create_task(_follow_content(app), name=CONTENT_TASK))
        yield
        await endpoint.drain()
        await bot.status.drain()
        if courier is not None and courier_task is not None:
            courier.stop()  # finishes what it holds, then its task ends
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(courier_task), 10)
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await writer.close()  # the write-behind records, before the process exits
        with contextlib.suppress(Exception):
            await bot.answered.flush(db)
        if courier is not None:
            await courier.close()

    return resources


async def _provider_callback(request: web.Request) -> web.StreamResponse:
    return await request.app[CALLBACKS].handle(request)


async def healthz(request: web.Request) -> web.Response:
    bot = request.app[BOT]
    return web.json_response({"status": "ok", "content_revision": bot.snapshot.revision,
                              "faq_entries": len(bot.snapshot.answers)})


async def readyz(request: web.Request) -> web.Response:
    """200 when the database and Redis answer and content is loaded; else 503 naming
    what failed."""
    from sqlalchemy import text

    failing: dict[str, str] = {}
    try:
        async with request.app[DATABASE].engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), READY_TIMEOUT)
    except Exception as exc:
        failing["database"] = type(exc).__name__
    redis = request.app[REDIS]
    if redis is not None:
        try:
            await asyncio.wait_for(redis.ping(), READY_TIMEOUT)  # type: ignore[attr-defined]
        except Exception as exc:
            failing["redis"] = type(exc).__name__
    bot = request.app[BOT]
    if not bot.snapshot.answers:
        failing["content"] = "no FAQ entries loaded"
    if failing:
        log.warning("not ready: %s", ", ".join(f"{k} ({v})" for k, v in failing.items()))
        return web.json_response({"status": "unready", "failing": failing}, status=503)
    return web.json_response({"status": "ready", "content_revision": bot.snapshot.revision})


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus text format; the outbox depth is read now, per scrape."""
    extra = []
    try:
        extra.append(metrics.outbox_family(await outbox_depth(request.app[DATABASE])))
    except Exception:
        log.warning("/metrics: cannot read the outbox depth", exc_info=True)
    body, content_type = metrics.exposition(extra)
    return web.Response(body=body, headers={"Content-Type": content_type})


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    """A request id for log lines (and the response), the reply-time histogram for
    POST /wechat, and which worker answered."""
    request_id = metrics.request_id_from(request.headers.get("X-Request-Id"))
    metrics.REQUEST_ID.set(request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    finally:
        if request.method == "POST" and request.path == "/wechat":
            metrics.REPLY_SECONDS.observe(time.perf_counter() - started)
    response.headers["X-Request-Id"] = request_id
    worker = request.app.get(WORKER)
    if worker is not None:
        response.headers["X-Huimin-Worker"] = str(worker)
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def _handshake(request: web.Request) -> web.StreamResponse:
    return await request.app[ENDPOINT].handshake(request)


async def _receive(request: web.Request) -> web.StreamResponse:
    return await request.app[ENDPOINT].receive(request)


@web.middleware
async def plain_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """HTTP errors as short plain text; anything unexpected is logged, not leaked."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if 400 <= exc.status < 500:
            log.info("refused %s %s: %d %s", request.method, request.path, exc.status,
                     exc.text or exc.reason)
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.Response(status=503, text="服务暂时不可用，请稍后再试")


def create_app(settings: Settings, backing: Backing, clock: Callable[[], datetime] = utcnow,
               write_delay: float = WRITE_DELAY) -> web.Application:
    """The bot application: ``/wechat``, ``/healthz`` and, in demo mode, ``/demo/chat``.

    ``backing``: the database, Redis and the stores on them, from the composition root
    (:func:`huimin.wiring.apps.create_app` builds one and closes it with the app).
    ``clock`` is what the bot's state reads as now (codes, locks, conversations, the
    dedup ledger, the courier); tests pass their own. ``write_delay``: how long a
    write-behind record may wait for a transaction to join (bot.writes)."""
    require_wechat(settings)
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[observe, plain_errors])
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_resources(settings, backing, clock, write_delay))
    app.router.add_get("/wechat", _handshake)
    app.router.add_post("/wechat", _receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_post("/notify/callbacks/{provider}/{kind}", _provider_callback)
    if settings.demo:
        from bot import demo

        demo.add_routes(app)  # (the composition root mounts the staff UI beside it)
    return app
