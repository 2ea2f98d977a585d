"""``huimin doctor``: check a configuration before going live.

Each check prints ✓ or ✗ with what it found and, for ✗, how to fix it; the exit code is
1 when any check failed. Checks: the settings (valid, and what a live server needs),
the schema at the newest alembic revision, Redis, an access_token fetch at the
configured WeChat API base (normal mode: it never invalidates the token in use), an SMS
template id for every reminder kind for each configured provider, and this server's
clock against the WeChat API's Date header.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from huimin.settings import (
    Settings,
    SettingsError,
    load_settings,
    require_sms_choice,
    sms_providers,
)

CHECKS = ("settings", "schema", "redis", "wechat", "sms", "clock")
CLOCK_TOLERANCE = 30.0  # seconds; WeChat's and the SMS providers' signatures allow 300
TIMEOUT = 10.0
# WeChat's stable_token refusals and what to do about each.
WECHAT_FIXES = {
    40001: "AppSecret 不对：到公众平台「设置与开发 > 基本配置」重置并复制 AppSecret，"
           "填到 HUIMIN_WECHAT_SECRET",
    40125: "AppSecret 不对：到公众平台「设置与开发 > 基本配置」重置并复制 AppSecret，"
           "填到 HUIMIN_WECHAT_SECRET",
    40013: "AppID 不对：复制公众平台「基本配置」里的 AppID，填到 HUIMIN_WECHAT_APPID",
    40164: "本机出口 IP 不在白名单：到公众平台「基本配置 > IP白名单」加上本服务器的公网 IP",
    61004: "本机出口 IP 不在白名单：到公众平台「基本配置 > IP白名单」加上本服务器的公网 IP",
    89503: "本机出口 IP 需要管理员确认：到公众平台「基本配置 > IP白名单」加上本服务器的公网 IP",
}


@dataclass
class Finding:
    check: str
    ok: bool
    text: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{'✓' if self.ok else '✗'} {self.check}：{self.text}"]
        if not self.ok and self.fix:
            out.append(f"    怎么改：{self.fix}")
        return out


@dataclass
class Probe:
    """What the WeChat fetch saw, shared with the clock check."""

    server_date: datetime | None = None
    local_date: datetime | None = None
    error: str = ""


# ----- settings ----------------------------------------------------------------
def check_settings(environ: Any = None) -> tuple[list[Finding], Settings | None]:
    try:
        settings = load_settings(environ)
    except SettingsError as exc:
        return [Finding("设置", False, str(exc), "按提示改正这个环境变量（见 .env.example）")], None
    found = []
    needed = [
        ("HUIMIN_WECHAT_TOKEN", settings.wechat_token, "公众平台「基本配置 > 服务器配置」的"
         "令牌(Token)，3–32 位字母或数字，两边填成一样"),
        ("HUIMIN_WECHAT_APPID", settings.wechat_appid, "公众平台「基本配置」的 AppID"),
        ("HUIMIN_WECHAT_SECRET", settings.wechat_secret, "公众平台「基本配置」的 AppSecret"),
        ("HUIMIN_SECRET_KEY", settings.secret_key, "至少 16 个随机字符，例如 "
         "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`，另行备份，不进代码库"),
    ]
    for name, value, fix in needed:
        if not value:
            found.append(Finding("设置", False, f"{name} 没有设置", fix))
    if settings.demo:
        found.append(Finding("设置", False, "HUIMIN_DEMO 打开了（/demo/sign 会用令牌签名）",
                             "正式环境删掉 HUIMIN_DEMO 或设为 false"))
    if settings.database_url.startswith("sqlite"):
        found.append(Finding("设置", True, "数据库是 SQLite：只能跑一个 bot 进程"
                             "（多进程请用 PostgreSQL）"))
    try:
        require_sms_choice(settings)
    except SettingsError as exc:
        found.append(Finding("设置", False, str(exc), "HUIMIN_SMS_PROVIDER=tencent 或 aliyun"))
    if not [f for f in found if not f.ok]:
        found.append(Finding("设置", True, "全部有效（数据库 "
                             f"{settings.database_url.split('://')[0]}，短信 "
                             f"{','.join(sms_providers(settings))}）"))
    return found, settings


# ----- schema ------------------------------------------------------------------
async def check_schema(settings: Settings) -> Finding:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from huimin.db import Database
    from huimin.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    url = make_url(settings.database_url)
    if (url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
            and not Path(str(url.database)).is_file()):  # connecting would create it
        return Finding("数据库结构", False, f"没有数据库文件 {url.database}",
                       "运行 huimin init（或把 HUIMIN_DATABASE_URL 指向已有的数据库）")
    db = Database(settings.database_url)
    try:
        async with db.engine.connect() as conn:
            current = await asyncio.wait_for(conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()), TIMEOUT)
    except Exception as exc:
        return Finding("数据库结构", False, f"连不上数据库：{type(exc).__name__}",
                       "检查 HUIMIN_DATABASE_URL 和数据库服务是否在运行")
    finally:
        await db.dispose()
    if current == head:
        return Finding("数据库结构", True, f"已是最新版本 {head}")
    if current is None:
        return Finding("数据库结构", False, "数据库是空的", "运行 huimin init")
    return Finding("数据库结构", False, f"版本 {current}，最新是 {head}",
                   "先备份（pg_dump），再运行 huimin init 升级")


# ----- redis -------------------------------------------------------------------
async def check_redis(settings: Settings) -> Finding:
    if not settings.redis_url:
        return Finding("Redis", True, "没有设置：去重、会话和频率控制放在数据库里")
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=TIMEOUT,
                           socket_timeout=TIMEOUT)
    try:
        await redis.ping()
    except Exception as exc:
        return Finding("Redis", False, f"连不上：{type(exc).__name__}",
                       "检查 HUIMIN_REDIS_URL 和 Redis 服务是否在运行")
    finally:
        await redis.aclose()
    return Finding("Redis", True, "能连上")


# ----- WeChat ------------------------------------------------------------------
async def check_wechat(settings: Settings, probe: Probe) -> Finding:
    """One normal-mode stable_token call (the token in use stays valid)."""
    import aiohttp

    if not settings.wechat_appid or not settings.wechat_secret:
        return Finding("微信接口", False, "没有 AppID 或 AppSecret，取不到 access_token",
                       "设置 HUIMIN_WECHAT_APPID 和 HUIMIN_WECHAT_SECRET")
    url = settings.wechat_api_base.rstrip("/") + "/cgi-bin/stable_token"
    payload = {"grant_type": "client_credential", "appid": settings.wechat_appid,
               "secret": settings.wechat_secret, "force_refresh": False}
    try:
        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
                    http.post(url, data=json.dumps(payload),
                              headers={"Content-Type": "application/json"}) as response):
            probe.local_date = datetime.now(UTC)
            date = response.headers.get("Date")
            if date:
                probe.server_date = parsedate_to_datetime(date)
            status, raw = response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        probe.error = type(exc).__name__
        return Finding("微信接口", False, f"连不上 {settings.wechat_api_base}：{probe.error}",
                       "检查 HUIMIN_WECHAT_API_BASE 和本机能否访问外网（api.weixin.qq.com:443）")
    try:
        data = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        data = {}
    if status != 200 or not isinstance(data, dict):
        return Finding("微信接口", False, f"HTTP {status}，回答不是 JSON",
                       "检查 HUIMIN_WECHAT_API_BASE 是否是微信接口地址")
    if data.get("access_token"):
        return Finding("微信接口", True, f"取到 access_token（有效 {data.get('expires_in')} 秒）")
    code = data.get("errcode")
    fix = WECHAT_FIXES.get(code if isinstance(code, int) else -1,
                           "按微信返回的错误码查公众平台文档，核对 AppID、AppSecret 和 IP 白名单")
    return Finding("微信接口", False, f"微信拒绝发 access_token：errcode {code} "
                   f"({str(data.get('errmsg', ''))[:80]})", fix)


# ----- SMS ---------------------------------------------------------------------
def check_sms(settings: Settings) -> list[Finding]:
    from notify.render import KINDS, SMS_ONLY_KINDS

    kinds = (*SMS_ONLY_KINDS, *KINDS)
    found = []
    for provider in sms_providers(settings):
        if provider == "console":
            found.append(Finding("短信模板", settings.demo,
                                 "console 不真正发短信（验证码和提醒都收不到）",
                                 "HUIMIN_SMS_PROVIDER=tencent 或 aliyun，并配好模板"))
            continue
        setting = f"HUIMIN_SMS_{provider.upper()}_TEMPLATES"
        templates = getattr(settings, f"sms_{provider}_templates")
        missing = [k for k in kinds if not templates.get(k)]
        if missing:
            found.append(Finding(f"短信模板（{provider}）", False,
                                 f"缺少 {', '.join(missing)} 的模板 ID",
                                 f"用 huimin notify preview 打印的模板正文到短信平台申请模板，"
                                 f"审核通过后把 ID 填到 {setting}，如 "
                                 f"{','.join(f'{k}=ID' for k in missing)}"))
        else:
            found.append(Finding(f"短信模板（{provider}）", True,
                                 f"{len(kinds)} 种提醒都有模板 ID"))
    return found


# ----- clock -------------------------------------------------------------------
def check_clock(probe: Probe) -> Finding:
    if probe.server_date is None or probe.local_date is None:
        return Finding("本机时钟", False, "没能从微信接口的 Date 头读到时间"
                       + (f"（{probe.error}）" if probe.error else ""),
                       "先让微信接口检查通过；或用 timedatectl 确认 NTP 已开启")
    offset = (probe.local_date - probe.server_date).total_seconds()
    # The Date header has whole seconds: up to one second of offset is rounding.
    if abs(offset) <= CLOCK_TOLERANCE:
        return Finding("本机时钟", True, f"与微信服务器相差 {offset:+.0f} 秒")
    return Finding("本机时钟", False, f"与微信服务器相差 {offset:+.0f} 秒"
                   f"（超过 {CLOCK_TOLERANCE:.0f} 秒，微信消息会被当成重放拒绝）",
                   "开启时间同步：timedatectl set-ntp true（或安装 chrony）")


# ----- all of it ---------------------------------------------------------------
async def diagnose(settings: Settings, skip: set[str]) -> list[Finding]:
    found: list[Finding] = []
    probe = Probe()
    if "schema" not in skip:
        found.append(await check_schema(settings))
    if "redis" not in skip:
        found.append(await check_redis(settings))
    if "wechat" not in skip:
        found.append(await check_wechat(settings, probe))
    if "sms" not in skip:
        found.extend(check_sms(settings))
    if "clock" not in skip:
        found.append(check_clock(probe))
    return found


def run_doctor(settings: Settings | None = None, skip: set[str] | None = None,
               environ: Any = None, out: Callable[[str], None] = print) -> int:
    """Print every finding; 0 when all are ✓, else 1."""
    skip = set(skip or ())
    unknown = skip - set(CHECKS)
    if unknown:
        out(f"huimin doctor: 没有这项检查：{', '.join(sorted(unknown))}"
            f"（可选：{', '.join(CHECKS)}）")
        return 2
    findings, loaded = check_settings(environ)
    settings = loaded or settings
    if "settings" in skip:
        findings = []
    if loaded is not None and settings is not None:
        findings += asyncio.run(diagnose(settings, skip))
    for finding in findings:
        for line in finding.lines():
            out(line)
    failed = sum(not f.ok for f in findings)
    out(f"{len(findings) - failed} 项通过，{failed} 项有问题" if failed else
        f"{len(findings)} 项全部通过")
    sys.stdout.flush()
    return 1 if failed else 0
