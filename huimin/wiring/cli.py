"""The ``huimin`` command line: one entry point for every part of the service."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from huimin.settings import (
    DEFAULT_DATABASE_URL,
    PREFIX,
    Settings,
    SettingsError,
    load_settings,
    require_sms_choice,
)

DEMO_DEFAULTS: dict[str, Any] = {
    "database_url": "sqlite+aiosqlite:///huimin-demo/huimin.db",
    "wechat_token": "huimindemo",
    "wechat_appid": "wxdemo0000000000",
    # Demo only: a real deployment sets its own HUIMIN_SECRET_KEY.
    "secret_key": "demo-secret-not-for-production",
    "demo": True,
}

DEMO_REGISTRY = Path(__file__).resolve().parents[2] / "content" / "demo" / "applications.csv"
log = logging.getLogger("huimin")


def _configure_logging(settings: Settings) -> None:
    from huimin.logs import configure_logging

    configure_logging(settings.log_level)  # China time, with the offset on each line


# ----- which database -------------------------------------------------------
def _where(settings: Settings) -> str:
    """The configured database, for messages: the SQLite file's full path, or the URL
    without its password; and whether it is the default."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        where = str(Path(url.database).resolve())
    else:
        where = url.render_as_string(hide_password=True)
    if not settings.given("database_url"):
        where += f" (HUIMIN_DATABASE_URL is not set: the default, {DEFAULT_DATABASE_URL})"
    return where


def _demo_hint() -> str:
    demo = Path(str(DEMO_DEFAULTS["database_url"]).split(":///", 1)[1])
    found = ", found in this folder" if demo.is_file() else ""
    return ("  Run `huimin init` to set it up, or point at an existing one. The demo's "
            f"(after `make demo`, from the project folder{found}):\n"
            f"    HUIMIN_DATABASE_URL={DEMO_DEFAULTS['database_url']} huimin ask ...\n"
            '  or take all the demo\'s settings:  eval "$(huimin demo --env)"')


def _missing_database(settings: Settings) -> str | None:
    """For commands that only read: what to say when the configured SQLite file does
    not exist (opening it would create an empty one), else None."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if Path(url.database).is_file():
        return None
    return f"no database at {_where(settings)}; nothing was created.\n{_demo_hint()}"


def _no_content(settings: Settings, exc: Exception) -> str:
    return f"{exc}\n  database: {_where(settings)}\n{_demo_hint()}"


# ----- init -----------------------------------------------------------------
async def initialise(settings: Settings) -> dict[str, int]:
    """Create or upgrade the schema and load the shipped content (idempotent)."""
    from content.load import catalogue_ids, load_content_files, load_county
    from content.queries import sync_shipped_content
    from content.schema import check
    from huimin.db import Database
    from huimin.migrate import upgrade

    files = load_content_files()
    problems = files.problems + check(files.entries, load_county(settings.county_file),
                                      files.dictionary, catalogue_ids())
    if problems:
        raise SystemExit("content has problems, nothing loaded:\n"
                         + "\n".join(f"  {p}" for p in problems))
    if settings.database_url.startswith("sqlite"):
        path = settings.database_url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        await upgrade(db.engine)
        async with db.session() as session:
            return await sync_shipped_content(session, files.entries, files.dictionary)
    finally:
        await db.dispose()


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    counts = asyncio.run(initialise(settings))
    print("schema up to date; content: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


# ----- serve / demo ---------------------------------------------------------
def serve(settings: Settings, banner: str | None = None) -> None:
    from aiohttp import web

    from huimin.wiring.apps import create_app
    from huimin.wiring.serve import shutdown_timeout

    app = create_app(settings)

    async def announce(_app: web.Application) -> None:
        if banner:
            print(banner, flush=True)

    app.on_startup.append(announce)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None,
                    access_log=None, shutdown_timeout=shutdown_timeout(settings))
    except OSError as exc:
        raise SettingsError(f"cannot listen on {settings.host}:{settings.port}: "
                            f"{exc.strerror or exc} (set HUIMIN_PORT or --port)") from None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import ContentMissing
    from huimin.metrics import install_log_format
    from huimin.wiring.serve import check_workers, serve_workers

    settings = settings.with_overrides(host=args.host or settings.host,
                                       port=args.port or settings.port)
    require_sms_choice(settings)
    check_workers(settings, args.workers)
    install_log_format(settings.log_format)
    banner = f"Huimin bot listening on http://{settings.host}:{settings.port}/wechat"
    if args.workers > 1:
        return serve_workers(settings, args.workers, f"{banner} ({args.workers} workers)")
    try:
        serve(settings, banner)
    except ContentMissing as exc:
        print(f"huimin: {exc}", file=sys.stderr)
        return 2
    return 0


def demo_environment(settings: Settings) -> dict[str, str]:
    """The demo's settings (the environment still wins) as HUIMIN_* variables, so any
    ``huimin`` command can be pointed at the demo's database with the demo's secret."""
    from sqlalchemy.engine import make_url

    env = {}
    for name in DEMO_DEFAULTS:
        value = getattr(settings, name)
        if name == "database_url":
            url = make_url(value)
            if url.get_backend_name() == "sqlite" and url.database not in (None, ":memory:"):
                value = url.set(database=str(Path(url.database).resolve())).render_as_string(
                    hide_password=False)
        env[PREFIX + name.upper()] = ("true" if value else "false") if isinstance(
            value, bool) else str(value)
    return env


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    settings = load_settings(defaults=DEMO_DEFAULTS)
    if args.env:
        import shlex

        print('# The demo\'s settings. Use them with: eval "$(huimin demo --env)"')
        for name, value in demo_environment(settings).items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    settings = settings.with_overrides(host=args.host or settings.host,
                                       port=args.port or settings.port)
    _configure_logging(settings)
    asyncio.run(initialise(settings))
    report = asyncio.run(import_file(settings, DEMO_REGISTRY))
    from admin.cli import DEMO_USERS, ensure_demo_users
    from admin.roles import ROLES

    asyncio.run(ensure_demo_users(settings))
    logins = "; ".join(f"{user} / {password} ({ROLES[role]})"
                       for user, _name, role, password in DEMO_USERS)
    base = f"http://{settings.host}:{settings.port}"
    serve(settings, "\n".join([
        "",
        "Huimin demo is running.",
        f"  Chat like a beneficiary:  {base}/demo/chat",
        f"  WeChat webhook:           {base}/wechat   (token: {settings.wechat_token})",
        f"  Bureau staff (admin UI):  {base}/admin/",
        f"    demo logins: {logins}",
        f"  Health:                   {base}/healthz",
        f"  Demo registry:            {report.summary()}; try 查进度 with",
        "                            34132319620817004X 张桂兰 (the SMS code is printed",
        "                            here, marked 演示短信: no SMS is really sent)",
        '  The CLI on the demo:      eval "$(.venv/bin/huimin demo --env)", then e.g.',
        "                            huimin notify run --once",
        "Press Ctrl+C to stop.",
        "",
    ]))
    return 0


# ----- ask ------------------------------------------------------------------
async def _snapshot(settings: Settings) -> Any:
    from bot.app import load_snapshot
    from content.guide import Guide
    from content.load import load_county
    from huimin.db import Database

    db = Database(settings.database_url)
    try:
        guide = Guide.load()
        county = load_county(settings.county_file)
        return await load_snapshot(db, county, guide), county, guide
    finally:
        await db.dispose()


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import ContentMissing
    from bot.dialog import reply_to_match

    missing = _missing_database(settings)
    if missing:
        print(f"huimin: {missing}", file=sys.stderr)
        return 2
    try:
        snapshot, county, guide = asyncio.run(_snapshot(settings))
    except ContentMissing as exc:
        print(f"huimin: {_no_content(settings, exc)}", file=sys.stderr)
        return 2

    def reply(question: str) -> dict[str, Any]:
        match = snapshot.matcher.match(question)
        return {"question": question, "faq_id": match.faq_id,
                "score": round(match.score, 1), "choices": match.choices,
                "answer": reply_to_match(match, snapshot, county, guide)}

    if args.question:
        result = reply(args.question)
        print(json.dumps(result, ensure_ascii=False) if args.json else result["answer"])
        return 0
    if not args.json:
        print("huimin ask: give a question, or --json to read questions from standard input",
              file=sys.stderr)
        return 2
    for line in sys.stdin:
        question = line.rstrip("\r\n")
        if question.strip():
            print(json.dumps(reply(question), ensure_ascii=False), flush=False)
    sys.stdout.flush()
    return 0


# ----- content --------------------------------------------------------------
def cmd_content_check(settings: Settings, args: argparse.Namespace) -> int:
    from content import DICTIONARY_FILE, FAQ_DIR
    from content.load import catalogue_ids, load_content_files, load_county
    from content.schema import check

    faq_dir = Path(args.dir) / "faq" if args.dir else FAQ_DIR
    dictionary = Path(args.dir) / "dictionary.yaml" if args.dir else DICTIONARY_FILE
    files = load_content_files(faq_dir, dictionary)
    problems = files.problems + check(files.entries, load_county(settings.county_file),
                                      files.dictionary, catalogue_ids())
    # Situations, referrals and kinds of question (the folder's own, else the shipped
    # ones), against its ids.
    from content.guidance import ASKS_FILE, REFERRALS_FILE, SITUATIONS_FILE, load_guidance

    def own(shipped: Path) -> Path:
        mine = Path(args.dir) / shipped.name if args.dir else shipped
        return mine if mine.is_file() else shipped

    guidance = load_guidance(own(SITUATIONS_FILE), own(REFERRALS_FILE),
                             known_ids={e.id for _, e in files.entries},
                             asks_file=own(ASKS_FILE))
    problems = [*problems, *guidance.problems]
    for problem in problems:
        print(problem)
    alternatives = sum(len(e.alternatives) for _, e in files.entries)
    print(f"{len(files.entries)} entries, {alternatives} alternative phrasings, "
          f"{len(files.dictionary.replacements)} dictionary replacements, "
          f"{len(guidance.situations)} situations, {len(guidance.referrals)} referral offices: "
          + (f"{len(problems)} problem(s)" if problems else "ok"))
    return 1 if problems else 0


async def _export(settings: Settings, out: Path) -> list[Path]:
    from sqlalchemy.exc import DBAPIError

    from bot.app import ContentMissing
    from content.load import export_content
    from content.queries import load_published
    from huimin.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            content = await load_published(session)
    except DBAPIError as exc:
        raise ContentMissing("the database has no Huimin schema: run `huimin init` first") \
            from exc
    finally:
        await db.dispose()
    return export_content(list(content.entries), content.dictionary, out)


def cmd_content_export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import ContentMissing

    missing = _missing_database(settings)
    if missing:
        print(f"huimin: {missing}", file=sys.stderr)
        return 2
    try:
        written = asyncio.run(_export(settings, Path(args.out)))
    except ContentMissing as exc:
        print(f"huimin: {_no_content(settings, exc)}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files to {args.out}")
    return 0


# ----- import ---------------------------------------------------------------
async def import_file(settings: Settings, path: Path, overwrite: bool = False) -> Any:
    """Import an application list into the registry; returns the ImportReport. Rows
    that would move a stage backwards or overwrite a change made in the staff UI are
    held back (reported) unless ``overwrite``."""
    from huimin.db import Database
    from huimin.personal import Vault
    from huimin.registry.importer import import_applications
    from huimin.settings import require_secret

    vault = Vault(require_secret(settings), settings.secret_key_previous)
    db = Database(settings.database_url)
    try:
        return await import_applications(db, vault, path, confirmed=overwrite)
    finally:
        await db.dispose()


def cmd_import_applications(settings: Settings, args: argparse.Namespace) -> int:
    from huimin.registry.importer import ImportFileError

    path = Path(args.file)
    if not path.is_file():
        print(f"huimin: no such file {str(path)!r}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(import_file(settings, path, overwrite=args.overwrite))
    except ImportFileError as exc:
        print(f"huimin: {exc}", file=sys.stderr)
        return 2
    for text in report.error_lines():  # the first 1,000, then how many more
        print(text)
    print(report.summary())
    if report.held:
        print(f"有 {report.held} 行没有导入：它们会把环节退回去，或改掉经办人员在系统里改过的"
              f"内容（名单可能是旧的）。核对无误、确实要按名单改的，加 --overwrite 再导入一次。")
    return 1 if report.failed else 0


def cmd_import_payouts(settings: Settings, args: argparse.Namespace) -> int:
    from huimin.db import Database
    from huimin.personal import Vault
    from huimin.registry.importer import ImportFileError
    from huimin.settings import require_secret
    from notify.payouts import import_payouts

    path = Path(args.file)
    if not path.is_file():
        print(f"huimin: no such file {str(path)!r}", file=sys.stderr)
        return 2

    async def run() -> Any:
        db = Database(settings.database_url)
        try:
            return await import_payouts(
                db, Vault(require_secret(settings), settings.secret_key_previous), path)
        finally:
            await db.dispose()

    try:
        report = asyncio.run(run())
    except ImportFileError as exc:
        print(f"huimin: {exc}", file=sys.stderr)
        return 2
    for text in report.error_lines():  # the first 1,000, then how many more
        print(text)
    print(report.summary() + "。运行 huimin notify plan 排队到账提醒。")
    return 1 if report.failed else 0


# ----- notify ---------------------------------------------------------------
def cmd_notify_plan(settings: Settings, args: argparse.Namespace) -> int:
    from huimin.db import Database
    from notify.plan import plan
    from notify.service import quiet_hours, recheck_offsets

    async def run() -> Any:
        db = Database(settings.database_url)
        try:
            return await plan(db, quiet=quiet_hours(settings),
                              recheck_offsets=recheck_offsets(settings))
        finally:
            await db.dispose()

    print(asyncio.run(run()).summary())
    return 0


async def run_worker(settings: Settings, once: bool, show_progress: bool) -> Any:
    """Run the notifier's worker until SIGTERM/SIGINT (or, with ``once``, until drained)."""
    import signal

    from sqlalchemy import func, select

    from content.load import load_county
    from huimin.wiring.resources import Backing
    from notify.models import QUEUED, OutboxMessage
    from notify.service import build_worker

    backing = Backing.open(settings)
    db = backing.db
    worker = build_worker(settings, load_county(settings.county_file), backing.notifier())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    bar = None
    try:
        if show_progress:
            from tqdm import tqdm

            async with db.session() as session:
                total = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                             .where(OutboxMessage.state == QUEUED))
            bar = tqdm(total=total, unit="条", desc="发送提醒", file=sys.stderr)
        return await worker.run(once=once, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
        await worker.close()
        await backing.close()


def cmd_notify_run(settings: Settings, args: argparse.Namespace) -> int:
    require_sms_choice(settings)
    summary = asyncio.run(run_worker(settings, args.once,
                                     show_progress=not args.quiet and sys.stderr.isatty()))
    print(summary.text())
    return 0


def cmd_notify_preview(settings: Settings, args: argparse.Namespace) -> int:
    from content.load import load_county
    from notify.render import preview

    for row in preview(load_county(settings.county_file)):
        print(f"== {row['kind']}")
        print(f"短信（{row['chars']}字，{row['segments']}条计费）：{row['sms']}")
        for name, value in row["wechat"].items():
            print(f"  微信 {name}: {value}")
        print(f"  腾讯云模板正文：{row['tencent']}")
        print(f"  阿里云模板正文：{row['aliyun']}")
    return 0


# ----- admin ----------------------------------------------------------------
def cmd_admin_serve(settings: Settings, args: argparse.Namespace) -> int:
    from admin.serve import run_admin
    from huimin.wiring.apps import create_admin_app

    run_admin(settings, create_admin_app(settings), args.host, args.port)
    return 0


def cmd_admin_create_user(settings: Settings, args: argparse.Namespace) -> int:
    from admin.cli import create_user_command

    return create_user_command(settings, args.username, args.role,
                               password_from="stdin" if args.password_stdin else "prompt",
                               display_name=args.name)


def cmd_admin_reset_password(settings: Settings, args: argparse.Namespace) -> int:
    from admin.cli import reset_password_command

    return reset_password_command(settings, args.username,
                                  password_from="stdin" if args.password_stdin else "prompt")


# ----- keys -----------------------------------------------------------------
def _batch_size(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 100000")
    return int(raw)


def _unreachable(settings: Settings, exc: Exception) -> str:
    """A database that cannot be reached, or has no Huimin tables: one line, no trace."""
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    return (f"cannot read the registry at {_where(settings)} ({first}); "
            "is the database running, and has `huimin init` been run?")


def _key_vault(settings: Settings) -> Any:
    from huimin.personal import Vault
    from huimin.settings import require_secret

    return Vault(require_secret(settings), settings.secret_key_previous)


def _local_time(moment: Any) -> str:
    from huimin.clock import CHINA

    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def _print_open_codes(report: Any) -> None:
    """Codes cannot be re-hashed: those issued under the old key work until they lapse."""
    if report.open_codes or report.open_invitations:
        print(f"还没用过的验证码 {report.open_codes} 个、家人授权码 {report.open_invitations} "
              f"个可能是用旧密钥发出的：现在新旧密钥都认，最晚 "
              f"{_local_time(report.codes_lapse_at)} 过期；在这之前删掉旧密钥，"
              "它们就不能用了（重新获取即可）")


def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from huimin.db import Database
    from huimin.keys import TABLE_NAMES, RotationError, rotate

    vault = _key_vault(settings)
    if not vault.rotating:
        print("huimin: 没有设置 HUIMIN_SECRET_KEY_PREVIOUS。换密钥的做法：新密钥填在 "
              "HUIMIN_SECRET_KEY，旧密钥填在 HUIMIN_SECRET_KEY_PREVIOUS，重启所有进程，"
              "再运行 huimin keys rotate", file=sys.stderr)
        return 2
    print(f"换密钥：旧密钥 {vault.previous_key_id} → 新密钥 {vault.key_id}，"
          f"每批 {args.batch} 条，每批一个事务；中断后再运行一次即可接着做", flush=True)

    def progress(table: str, checked: int, total: int, rewritten: int) -> None:
        print(f"{TABLE_NAMES.get(table, table)}：已检查 {checked}/{total}，"
              f"其中换成新密钥 {rewritten}", flush=True)

    async def run() -> Any:
        db = Database(settings.database_url)
        try:
            return await rotate(db, vault, batch=args.batch, progress=progress)
        finally:
            await db.dispose()

    missing = _missing_database(settings)
    if missing:
        print(f"huimin: {missing}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run())
    except RotationError as exc:
        print(f"huimin: {exc}", file=sys.stderr)
        return 1
    except (DBAPIError, OSError) as exc:
        print(f"huimin: {_unreachable(settings, exc)}", file=sys.stderr)
        return 2
    people = report.tables["beneficiaries"]
    print(f"完成：救助对象 {people.total} 人全部在新密钥下（本次换了 {people.stale} 人，"
          f"退订和计数记录换了 {people.carried} 条），待发验证码换了 "
          f"{report.tables['outbox'].stale} 条")
    _print_open_codes(report)
    removable = ("现在" if not report.codes_lapse_at
                 else f"{_local_time(report.codes_lapse_at)} 之后")
    print(f"{removable}可以删除 HUIMIN_SECRET_KEY_PREVIOUS（旧密钥 {vault.previous_key_id}），"
          "然后重启所有进程")
    return 0


def cmd_keys_status(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from huimin.db import Database
    from huimin.keys import TABLE_NAMES, key_status

    vault = _key_vault(settings)
    missing = _missing_database(settings)
    if missing:
        print(f"huimin: {missing}", file=sys.stderr)
        return 2

    async def run() -> Any:
        db = Database(settings.database_url)
        try:
            return await key_status(db, vault)
        finally:
            await db.dispose()

    try:
        report = asyncio.run(run())
    except (DBAPIError, OSError) as exc:
        print(f"huimin: {_unreachable(settings, exc)}", file=sys.stderr)
        return 2
    previous = f"，旧密钥 {vault.previous_key_id}" if vault.rotating else ""
    print(f"当前密钥 {vault.key_id}{previous}")
    for table, tally in report.tables.items():
        line = (f"{TABLE_NAMES.get(table, table)}：共 {tally.total} 条，"
                f"还在旧密钥下 {tally.stale} 条")
        if tally.carried:
            line += f"，另有退订和计数记录 {tally.carried} 条"
        if tally.unreadable:
            line += f"，打不开 {tally.unreadable} 条"
        print(line)
    _print_open_codes(report)
    if report.unreadable:
        print("有数据打不开：如果正在换密钥，请把旧密钥填在 HUIMIN_SECRET_KEY_PREVIOUS")
        return 1
    if report.stale:
        print("还没换完：运行 huimin keys rotate")
        return 1
    print("全部数据都在当前密钥下" + ("，可以删除 HUIMIN_SECRET_KEY_PREVIOUS"
                                      if vault.rotating and not report.codes_lapse_at else ""))
    return 0


# ----- doctor ---------------------------------------------------------------
def cmd_doctor(settings: Settings | None, args: argparse.Namespace) -> int:
    from huimin.wiring.doctor import run_doctor

    return run_doctor(settings, skip=set(args.skip))


# ----- wechat ---------------------------------------------------------------
def cmd_wechat_menu(settings: Settings, args: argparse.Namespace) -> int:
    from content.guide import Guide

    print(json.dumps(dict(Guide.load().wechat_menu), ensure_ascii=False, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huimin", description="Huimin (惠民) service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or upgrade the schema and load shipped content"
                   ).set_defaults(func=cmd_init)
    for name, func, text in (("serve", cmd_serve, "run the WeChat bot server"),
                             ("demo", cmd_demo, "run everything on SQLite with demo settings")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        if name == "demo":
            p.add_argument("--env", action="store_true",
                           help="print the demo's settings as shell exports and exit")
        if name == "serve":
            p.add_argument("--workers", type=int, default=1,
                           help="processes on the same port (more than 1 needs PostgreSQL)")
        p.set_defaults(func=func)
    ask = sub.add_parser("ask", help="print the bot's reply to a question")
    ask.add_argument("question", nargs="?")
    ask.add_argument("--json", action="store_true",
                     help="JSON output; without a question, one question per stdin line")
    ask.set_defaults(func=cmd_ask)
    content = sub.add_parser("content", help="FAQ content files").add_subparsers(
        dest="action", required=True)
    check = content.add_parser("check", help="validate the content files")
    check.add_argument("--dir", help="a content folder (default: the shipped one)")
    check.set_defaults(func=cmd_content_check)
    export = content.add_parser("export", help="write the current content out as files")
    export.add_argument("out", help="folder to write faq/*.yaml and dictionary.yaml into")
    export.set_defaults(func=cmd_content_export)
    importer = sub.add_parser("import", help="import the bureau's lists").add_subparsers(
        dest="what", required=True)
    applications = importer.add_parser(
        "applications", help="an application list (CSV or XLSX with Chinese headers)")
    applications.add_argument("file")
    applications.add_argument(
        "--overwrite", action="store_true",
        help="also import the rows that move a stage backwards or overwrite a change made "
             "in the staff UI (held back and reported without it)")
    applications.set_defaults(func=cmd_import_applications)
    payouts = importer.add_parser(
        "payouts", help="a payout list (CSV or XLSX): who, programme, month, amount")
    payouts.add_argument("file")
    payouts.set_defaults(func=cmd_import_payouts)
    notify = sub.add_parser("notify", help="payout, recheck and status reminders"
                            ).add_subparsers(dest="action", required=True)
    notify.add_parser("plan", help="queue the reminders that are due").set_defaults(
        func=cmd_notify_plan)
    run = notify.add_parser("run", help="send queued reminders (the worker)")
    run.add_argument("--once", action="store_true", help="drain what is ready, then exit")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_notify_run)
    notify.add_parser("preview", help="show every reminder text with sample values"
                      ).set_defaults(func=cmd_notify_preview)
    admin = sub.add_parser("admin", help="the staff web UI").add_subparsers(
        dest="action", required=True)
    serve_admin = admin.add_parser("serve", help="run the admin UI alone, at /admin")
    serve_admin.add_argument("--host")
    serve_admin.add_argument("--port", type=int)
    serve_admin.set_defaults(func=cmd_admin_serve)
    create = admin.add_parser("create-user", help="add a staff account")
    create.add_argument("username")
    create.add_argument("--role", required=True,
                        help="admin/editor/caseworker or 管理员/内容编辑/经办人员")
    create.add_argument("--name")
    create.add_argument("--password-stdin", action="store_true")
    create.set_defaults(func=cmd_admin_create_user)
    reset = admin.add_parser("reset-password", help="new password; also re-enables the account")
    reset.add_argument("username")
    reset.add_argument("--password-stdin", action="store_true")
    reset.set_defaults(func=cmd_admin_reset_password)
    keys = sub.add_parser("keys", help="change HUIMIN_SECRET_KEY without losing data"
                          ).add_subparsers(dest="action", required=True)
    rotate = keys.add_parser("rotate", help="re-encrypt and re-hash everything under the new "
                             "key (HUIMIN_SECRET_KEY_PREVIOUS = the old one); resumable")
    rotate.add_argument("--batch", type=_batch_size, default=500, help="rows per transaction")
    rotate.set_defaults(func=cmd_keys_rotate)
    keys.add_parser("status", help="how many rows are still under the previous key"
                    ).set_defaults(func=cmd_keys_status)
    doctor = sub.add_parser("doctor", help="check this configuration before going live")
    doctor.add_argument("--skip", action="append", default=[], metavar="CHECK",
                        help="leave out a check (settings, schema, redis, wechat, sms, clock)")
    doctor.set_defaults(func=cmd_doctor)
    wechat = sub.add_parser("wechat", help="WeChat account tools").add_subparsers(
        dest="action", required=True)
    wechat.add_parser("menu", help="print the custom menu JSON").set_defaults(
        func=cmd_wechat_menu)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":  # a bad setting is one of its ✗ findings, with the fix
        return int(args.func(None, args))
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"huimin: {exc}", file=sys.stderr)
        return 2
    if args.command != "demo":
        _configure_logging(settings)
    try:
        return int(args.func(settings, args) or 0)
    except SettingsError as exc:
        print(f"huimin: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
