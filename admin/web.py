"""What every admin page shares: application state, templates, URLs, the signed-in
account, and the middlewares (error pages, sign-in, CSRF, role checks)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from admin.accounts import LoginGuard, SignedIn, find_session, pop_flash, set_flash
from admin.audit import ACTIONS, TARGETS, Actor
from admin.labels import (
    CHANNEL_LABELS,
    FAQ_FIELD_LABELS,
    KIND_LABELS,
    STATE_LABELS,
    reason_text,
    who_label,
)
from admin.roles import ROLES, can, navigation
from admin.tryout import TryOut
from admin.uploads import MAX_UPLOAD, UploadStore
from huimin.clock import CHINA, as_utc, utcnow
from huimin.db import Database
from huimin.personal import Vault
from huimin.settings import Settings

if TYPE_CHECKING:
    from notify.wechat import AccessTokenStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "huimin_admin"
LOGIN_COOKIE = "huimin_admin_login"  # double-submit token for the sign-in form
MAX_BODY = 2 * 1024 * 1024
# Routes that take an application or payout list (CSV/XLSX), and may be larger.
LIST_UPLOADS = frozenset({"registry_preview", "payouts_preview"})
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What an account that must choose a new password may still reach.
PASSWORD_CHANGE_ROUTES = frozenset({"account", "account_password", "logout", "static"})


@dataclass
class AdminState:
    settings: Settings
    db: Database
    guard: LoginGuard
    tryout: TryOut
    county: Mapping[str, Any]
    # route name -> capability (None: open to everyone, e.g. the sign-in page)
    capabilities: dict[str, str | None] = field(default_factory=dict)
    uploads: UploadStore = field(default_factory=UploadStore)
    # Where sessions and sign-in throttling read the time: once per request.
    clock: Callable[[], datetime] = utcnow
    # Proxies of ours in front that append to X-Forwarded-For; None: the header is ignored.
    forwarded_hops: int | None = None
    # WeChat's access token, shared with every process (None without an AppID).
    tokens: AccessTokenStore | None = None
    _vault: Vault | None = None

    @property
    def vault(self) -> Vault:
        """Encrypts and hashes ID and phone numbers; needs HUIMIN_SECRET_KEY."""
        if self._vault is None:
            if not self.settings.secret_key or len(self.settings.secret_key) < 16:
                raise web.HTTPServiceUnavailable(reason="no_secret")
            self._vault = Vault(self.settings.secret_key, self.settings.secret_key_previous)
        return self._vault

    @property
    def secure_cookies(self) -> bool:
        return self.settings.admin_secure_cookies


STATE = web.AppKey("admin_state", AdminState)
SIGNED_IN_KEY = web.RequestKey("admin_signed_in", SignedIn)


def state(request: web.Request) -> AdminState:
    return request.app[STATE]


def signed_in(request: web.Request) -> SignedIn:
    return request[SIGNED_IN_KEY]


def _address(text: str) -> str | None:
    """'203.0.113.7', '203.0.113.7:5123', '2001:db8::1' or '[2001:db8::1]:443' as a
    plain address; None for anything else."""
    text = text.strip()
    if not text or len(text) > 100:
        return None
    port = ""
    if text.startswith("["):
        text, closed, port = text[1:].partition("]")
        if not closed or (port and not port.startswith(":")):
            return None
        port = port[1:] if port else ""
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def forwarded_address(values: list[str], hops: int) -> str | None:
    """The address our ``hops``-th proxy from the app saw, from X-Forwarded-For.

    Each proxy appends the address it received the request from, so the entries on the
    left are whatever the client sent and only the last ``hops`` are ours. None when the
    header is missing, too short (the request did not come through all our proxies) or
    that entry is not an address."""
    entries = [entry for value in values for entry in value.split(",")]
    if hops < 1 or len(entries) < hops:
        return None
    return _address(entries[-hops])


def client_ip(request: web.Request) -> str | None:
    """The address sign-in limits and the audit log use: the peer, or behind our own
    proxies (HUIMIN_ADMIN_TRUST_FORWARDED) the address the outermost of them saw."""
    hops = state(request).forwarded_hops
    if hops is not None:
        found = forwarded_address(request.headers.getall("X-Forwarded-For", []), hops)
        if found is not None:
            return found
        log.debug("admin: no usable X-Forwarded-For entry %d from the right; using the peer",
                  hops)
    return request.remote


def actor(request: web.Request) -> Actor:
    current = request.get(SIGNED_IN_KEY)
    if current is None:
        return Actor(None, None, client_ip(request))
    return Actor(current.user.id, current.user.username, client_ip(request))


# ----- URLs ------------------------------------------------------------------------
def url(request: web.Request, name: str, query: Mapping[str, Any] | None = None,
        **parts: Any) -> str:
    """The path of a named admin route, wherever the admin app is mounted."""
    built = request.app.router[name].url_for(**{k: str(v) for k, v in parts.items()})
    if query:
        built = built.with_query({k: str(v) for k, v in query.items() if v not in (None, "")})
    return str(built)


def base_path(request: web.Request) -> str:
    """'/admin' when mounted there, '/' when the admin app runs on its own."""
    return url(request, "home").rstrip("/") or "/"


def safe_next(request: web.Request, target: str | None) -> str:
    """Only a path inside the admin app (no other site, no scheme-relative URL)."""
    home = url(request, "home")
    if target and target.startswith(home) and not target.startswith("//") \
            and "\\" not in target and "\n" not in target and "\r" not in target:
        return target
    return home


def redirect(request: web.Request, name: str, query: Mapping[str, Any] | None = None,
             **parts: Any) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(url(request, name, query, **parts))


async def flash(request: web.Request, kind: str, text: str) -> None:
    await set_flash(state(request).db, signed_in(request), kind, text)


# ----- templates -------------------------------------------------------------------
def _local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return as_utc(value).astimezone(CHINA).strftime(fmt)


templates = jinja2.Environment(
    loader=jinja2.PackageLoader("admin", "templates"),
    autoescape=jinja2.select_autoescape(["html"], default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
def _day(value: date | None) -> str:
    return "" if value is None else f"{value.year}-{value.month:02d}-{value.day:02d}"


def _money(value: Decimal | float | int | None) -> str:
    return "" if value is None else f"{Decimal(value):,.2f}"


templates.filters["local"] = _local
templates.filters["day"] = _day
templates.filters["money"] = _money
templates.filters["who"] = who_label
templates.globals.update(ROLES=ROLES, ACTIONS=ACTIONS, TARGETS=TARGETS, LABELS=FAQ_FIELD_LABELS,
                         KINDS=KIND_LABELS, STATES=STATE_LABELS, CHANNELS=CHANNEL_LABELS,
                         reason_text=reason_text)


async def render(request: web.Request, template: str, status: int = 200,
                 **context: Any) -> web.Response:
    current: SignedIn | None = request.get(SIGNED_IN_KEY)
    message = None
    if current is not None and request.method == "GET":
        message = await pop_flash(state(request).db, current)

    def link(name: str, query: Mapping[str, Any] | None = None, **parts: Any) -> str:
        return url(request, name, query, **parts)

    def static(filename: str) -> str:
        return str(request.app.router["static"].url_for(filename=filename))

    html = templates.get_template(template).render(
        url=link, static=static, request=request,
        user=current.user if current else None,
        csrf=current.csrf_token if current else "",
        nav=navigation(current.user.role) if current else [],
        can=(lambda cap: can(current.user.role, cap)) if current else (lambda cap: False),
        flash=message, **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


# ----- middlewares -----------------------------------------------------------------
_ERRORS = {
    400: ("请求有误", "提交的内容不完整或格式不对，请返回重新填写。"),
    403: ("没有权限", "您的账号不能使用这个页面或操作。如需使用，请找管理员。"),
    404: ("找不到页面", "这个页面不存在，可能地址写错了，或者内容已经删除。"),
    405: ("操作方式不对", "请从页面上的按钮进行操作。"),
    413: ("文件太大", "上传的文件太大了。问答或词典请一次只传一个文件；"
                      f"名单文件最大{MAX_UPLOAD // 2**20}MB，太大请分成几个文件上传。"),
    429: ("请稍后再试", "操作太频繁了，请过几分钟再试。"),
    503: ("暂时不能使用", "系统暂时不能处理这个请求，请稍后再试。"),
}
# Specific messages, by the reason an HTTPException was raised with.
_REASONS = {
    "bad_form": "提交的内容格式不对，系统没法读取，什么也没有保存。请回到上一页，"
                "刷新后重新填写再提交。",
    "no_secret": "系统还没有设置保护身份证号和手机号用的密钥（HUIMIN_SECRET_KEY），"
                 "救助对象、发放和提醒的页面暂时不能用。请联系管理员。",
}
CSRF_MESSAGE = ("页面已过期，或者这个请求不是从本系统的页面发出的，操作没有执行。"
                "请返回上一页，刷新后再试。")


async def error_page(request: web.Request, status: int, text: str | None = None
                     ) -> web.Response:
    title, body = _ERRORS.get(status, ("出错了", "系统出了点问题，请稍后再试。"))
    try:
        return await render(request, "error.html", status=status, title=title,
                            message=text or body)
    except Exception as exc:  # the error page itself must never fail
        log.error("admin: the error page failed (%s)", type(exc).__name__)
        log.debug("admin: the error page failed", exc_info=True)
        return web.Response(status=status, text=f"{title}：{text or body}",
                            content_type="text/plain", charset="utf-8")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Plain error pages in Chinese; larger bodies allowed than the bot's (uploads)."""
    if request.method == "POST":
        name = getattr(request.match_info.route, "name", None)
        limit = MAX_UPLOAD + 64 * 1024 if name in LIST_UPLOADS else MAX_BODY
        request = request.clone(client_max_size=limit)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = CSRF_MESSAGE if exc.reason == "csrf" else _REASONS.get(exc.reason or "")
        return await error_page(request, exc.status, text)
    except Exception as exc:
        # One line (the exception's text may hold what was typed: not logged); the
        # traceback only when debugging.
        route = getattr(request.match_info.route, "name", None) or "?"
        log.error("admin: unexpected %s on %s %s", type(exc).__name__, request.method, route)
        log.debug("admin: unexpected error on %s %s", request.method, route, exc_info=True)
        return await error_page(request, 500)


# What aiohttp raises for a form or multipart body it cannot read: no boundary, a broken
# part header, a NUL in a filename, bytes that are not in the body's charset, an unknown
# charset, a body cut short.
FORM_ERRORS = (ValueError, LookupError, HttpProcessingError, AssertionError)


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The request's form (urlencoded or multipart); a body that cannot be read is a 400
    with one log line. Every POST comes through here first (the CSRF check), so handlers'
    own ``request.post()`` gets the form already read."""
    try:
        return await request.post()
    except web.HTTPException:
        raise  # 413: too large
    except FORM_ERRORS as exc:
        route = getattr(request.match_info.route, "name", None) or "?"
        log.info("admin: unreadable form on POST %s from %s (%s)", route,
                 request.remote, type(exc).__name__)
        raise web.HTTPBadRequest(reason="bad_form") from None


async def check_csrf(request: web.Request, expected: str | None) -> MultiDictProxy[Any]:
    form = await read_form(request)
    sent = form.get("csrf")
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(
            sent.encode(), expected.encode()):
        raise web.HTTPForbidden(reason="csrf")
    return form


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sign-in, CSRF on every POST, and the capability each route needs."""
    route = request.match_info.route
    name = getattr(route, "name", None)
    known = state(request).capabilities
    if name is None and request.match_info.http_exception is not None:
        return await handler(request)  # 404 / 405: the error page says so
    if name not in known:
        raise web.HTTPForbidden()  # a route nobody gave a capability: closed
    capability = known[name]
    if capability is None:
        if request.method == "POST":
            await check_csrf(request, request.cookies.get(LOGIN_COOKIE))
        return await handler(request)
    current, expired = await find_session(state(request).db,
                                          request.cookies.get(SESSION_COOKIE),
                                          state(request).clock())
    if current is None:
        query = {"m": "expired" if expired else "login"}
        if request.method == "GET":
            query["next"] = request.path_qs
        response = web.HTTPSeeOther(url(request, "login", query))
        if expired:
            response.del_cookie(SESSION_COOKIE, path=base_path(request))
        raise response
    request[SIGNED_IN_KEY] = current
    if current.user.must_change_password and name not in PASSWORD_CHANGE_ROUTES:
        # A password someone else chose (a new account, an administrator's reset):
        # nothing else until the owner has chosen their own.
        raise web.HTTPSeeOther(url(request, "account"))
    if not can(current.user.role, capability):
        raise web.HTTPForbidden()
    if request.method == "POST":
        await check_csrf(request, current.csrf_token)
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type != "text/css" and response.content_type != "text/javascript":
        response.headers.setdefault("Cache-Control", "no-store")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, path=base_path(request), httponly=True,
                        samesite="Strict", max_age=max_age,
                        secure=request.secure or state(request).secure_cookies)


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def form_text(form: Mapping[str, Any], key: str, limit: int = 20000) -> str:
    value = form.get(key)
    return value[:limit] if isinstance(value, str) else ""


def page_number(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    return max(1, min(int(raw), 100000)) if raw.isdigit() else 1
