"""A local stand-in for WeChat's server API (api.weixin.qq.com), strict about shapes.

Speaks the three endpoints the notifier uses, as WeChat documents them:

* ``POST /cgi-bin/stable_token`` - JSON ``{grant_type, appid, secret, force_refresh}``;
  normal mode returns the current token until its last 5 minutes, then a new one
  (the old one stays valid until it expires); force refresh issues a new token and
  invalidates the previous one at once, is ignored within 30 s of the last one and
  allowed 20 times a day.
* ``POST /cgi-bin/message/template/send?access_token=`` - checks the token (40001 for
  an unknown or invalidated one, 42001 for an expired one), the openid (40003), the
  template (40037), each value against its field type (47003), and deduplicates by
  openid + ``client_msg_id`` like WeChat: the same msgid, no second delivery.
* ``POST /cgi-bin/message/custom/send?access_token=`` - a text customer-service message.

Anything else answers ``{"errcode": 40066, "errmsg": "invalid url"}``. Every request
that breaks the documented shape gets errcode 47001 *and* is noted in
:attr:`FakeWeChat.problems`, which tests assert to be empty.

Usage::

    fake = FakeWeChat()
    base_url = await fake.start(aiohttp_server)   # -> settings.wechat_api_base
    fake.errcodes["o" + "x" * 27] = 43004         # this user unfollowed
    fake.revoke()                                  # WeChat invalidates the token
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

APPID = "wx5f3e9c1d2b4a6078"
SECRET = "0123456789abcdef0123456789abcdef"  # an AppSecret is 32 hex characters
OPENID = re.compile(r"^[A-Za-z0-9_-]{28}$")
TEMPLATE_SEND = "/cgi-bin/message/template/send"
CUSTOM_SEND = "/cgi-bin/message/custom/send"
STABLE_TOKEN = "/cgi-bin/stable_token"
FORCE_REFRESH_PER_DAY = 20
FORCE_REFRESH_INTERVAL = 30.0
DEDUP_WINDOW = 600.0  # client_msg_id is honoured for 10 minutes
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Category-template field rules ("类目模板消息"), independent of notify.wechat.
FIELD_RULES: dict[str, re.Pattern[str]] = {
    "thing": re.compile(r"^.{1,20}$", re.S),
    "character_string": re.compile(rf"^[^{_CJK}]{{1,32}}$"),
    "phrase": re.compile(rf"^[{_CJK}]{{1,5}}$"),
    "number": re.compile(r"^\d[\d.]{0,31}$"),
    "letter": re.compile(r"^[A-Za-z]{1,32}$"),
    "symbol": re.compile(r"^[^A-Za-z0-9\u3400-\u9fff]{1,5}$"),
    "name": re.compile(rf"^(?:[{_CJK}·]{{1,10}}|[A-Za-z .·-]{{1,20}})$"),
    "car_number": re.compile(r"^.{1,8}$"),
    "phone_number": re.compile(r"^[0-9+\-() ]{1,17}$"),
    "time": re.compile(r"^.{1,40}$"),
    "date": re.compile(r"^.{1,40}$"),
    "amount": re.compile(r"^[¥￥$]?\d{1,10}(\.\d{1,2})?元?$"),
}
_FIELD = re.compile(r"^([a-z_]+?)_?\d*$")


def error(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": f"{errmsg} rid: {secrets.token_hex(4)}"}


@dataclass
class IssuedToken:
    value: str
    expires_at: float
    revoked: bool = False


class FakeWeChat:
    """The fake's state is plain attributes, meant to be read and set by tests."""

    def __init__(self, appid: str = APPID, secret: str = SECRET, *, token_ttl: int = 7200,
                 templates: set[str] | None = None, token_delay: float = 0.0) -> None:
        self.appid = appid
        self.secret = secret
        self.token_ttl = token_ttl
        self.templates = templates if templates is not None else {"TPL-PAYOUT", "TPL-STATUS"}
        self.token_delay = token_delay  # seconds stable_token takes (widens races)
        self.clock_offset = 0.0
        self.tokens: dict[str, IssuedToken] = {}
        self.current: IssuedToken | None = None
        self.token_requests: list[dict[str, Any]] = []  # every stable_token body
        self.force_refreshes_today = 0
        self.last_force = -1e9
        self.messages: list[dict[str, Any]] = []  # delivered template messages
        self.texts: list[dict[str, Any]] = []  # delivered customer-service messages
        self.errcodes: dict[str, int] = {}  # openid -> errcode its messages get
        self.next_failures: list[int | tuple[str, int]] = []  # errcode or ("http", status)
        self.problems: list[str] = []
        self._dedup: dict[tuple[str, str], tuple[int, float]] = {}
        self._msgids = itertools.count(2_000_000_001)
        self._serial = itertools.count(1)
        self.server: Any = None
        self.base_url = ""  # set by start()

    # -- test controls --

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (tokens expire, dedup windows close)."""
        self.clock_offset += seconds

    def revoke(self, token: str | None = None) -> str:
        """WeChat stops accepting a token (default: the current one) but normal-mode
        stable_token keeps returning it: only a force refresh gets a working one."""
        issued = self.tokens[token] if token else self.current
        assert issued is not None, "no token issued yet"
        issued.revoked = True
        return issued.value

    def rotate(self) -> str:
        """Someone else force-refreshed: a new current token, the old one revoked."""
        if self.current:
            self.current.revoked = True
        return self._issue().value

    @property
    def token_calls(self) -> int:
        return len(self.token_requests)

    @property
    def force_refresh_calls(self) -> int:
        return sum(1 for body in self.token_requests if body.get("force_refresh") is True)

    @property
    def issued(self) -> list[str]:
        return list(self.tokens)

    async def start(self, aiohttp_server: Any) -> str:
        """Serve on a free local port; returns the base URL (no trailing slash)."""
        app = web.Application()
        app.router.add_route("*", STABLE_TOKEN, self._stable_token)
        app.router.add_route("*", TEMPLATE_SEND, self._template_send)
        app.router.add_route("*", CUSTOM_SEND, self._custom_send)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        # No access log: it would print request URLs, access tokens included.
        self.server = await aiohttp_server(app, access_log=None)
        self.base_url = str(self.server.make_url("")).rstrip("/")
        return self.base_url

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()

    # -- helpers --

    def _issue(self) -> IssuedToken:
        value = f"{next(self._serial)}_FAKEAT_{secrets.token_urlsafe(48)}"
        issued = IssuedToken(value, self.now() + self.token_ttl)
        self.tokens[value] = issued
        self.current = issued
        return issued

    def _problem(self, text: str) -> dict[str, Any]:
        self.problems.append(text)
        return error(47001, "data format error")

    @staticmethod
    def _reply(body: dict[str, Any], status: int = 200) -> web.Response:
        # WeChat is not consistent about Content-Type; clients must not rely on it.
        return web.Response(text=json.dumps(body, ensure_ascii=False), status=status,
                            content_type="text/plain")

    async def _json_body(self, request: web.Request, path: str) -> dict[str, Any] | None:
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.problems.append(f"{path}: body is not UTF-8 JSON")
            return None
        if not isinstance(body, dict):
            self.problems.append(f"{path}: body is not a JSON object")
            return None
        return body

    def _check_token(self, request: web.Request) -> dict[str, Any] | None:
        token = request.query.get("access_token")
        if not token:
            return error(41001, "access_token missing")
        issued = self.tokens.get(token)
        if issued is None or issued.revoked:
            return error(40001, "invalid credential, access_token is invalid or not latest")
        if issued.expires_at <= self.now():
            return error(42001, "access_token expired")
        return None

    def _injected(self, openid: str) -> web.Response | None:
        if self.next_failures:
            failure = self.next_failures.pop(0)
            if isinstance(failure, tuple):
                return web.Response(text="<html>Bad Gateway</html>", status=failure[1],
                                    content_type="text/html")
            return self._reply(error(failure, "injected failure"))
        if openid in self.errcodes:
            return self._reply(error(self.errcodes[openid], "configured for this openid"))
        return None

    # -- endpoints --

    async def _stable_token(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return self._reply(error(43002, "require POST method"))
        if request.query:
            self.problems.append("stable_token: takes no query string (secret in URL?)")
        body = await self._json_body(request, STABLE_TOKEN)
        if body is None:
            return self._reply(error(47001, "data format error"))
        self.token_requests.append({k: v for k, v in body.items() if k != "secret"})
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        extra = set(body) - {"grant_type", "appid", "secret", "force_refresh"}
        if extra:
            return self._reply(self._problem(f"stable_token: unexpected fields {sorted(extra)}"))
        if "force_refresh" in body and not isinstance(body["force_refresh"], bool):
            return self._reply(self._problem("stable_token: force_refresh must be a boolean"))
        if body.get("grant_type") != "client_credential":
            return self._reply(error(40002, "invalid grant_type"))
        if body.get("appid") != self.appid:
            return self._reply(error(40013, "invalid appid"))
        if body.get("secret") != self.secret:
            return self._reply(error(40125, "invalid appsecret"))
        now = self.now()
        if body.get("force_refresh"):
            if self.force_refreshes_today >= FORCE_REFRESH_PER_DAY:
                return self._reply(error(45009, "reach max api daily quota limit"))
            if now - self.last_force >= FORCE_REFRESH_INTERVAL or self.current is None:
                self.force_refreshes_today += 1
                self.last_force = now
                if self.current:
                    self.current.revoked = True
                self._issue()
        elif self.current is None or self.current.expires_at - now <= 300:
            self._issue()
        assert self.current is not None
        return self._reply({"access_token": self.current.value,
                            "expires_in": int(self.current.expires_at - now)})

    async def _template_send(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return self._reply(error(43002, "require POST method"))
        refused = self._check_token(request)
        if refused:
            return self._reply(refused)
        body = await self._json_body(request, TEMPLATE_SEND)
        if body is None:
            return self._reply(error(47001, "data format error"))
        shape = self._template_shape(body)
        if shape:
            return self._reply(self._problem(f"template/send: {shape}"))
        openid = body["touser"]
        if not OPENID.match(openid):
            return self._reply(error(40003, "invalid openid"))
        injected = self._injected(openid)
        if injected:
            return injected
        if body["template_id"] not in self.templates:
            return self._reply(error(40037, "invalid template_id"))
        for key, field in body["data"].items():
            rule = FIELD_RULES.get(_FIELD.match(key).group(1) if _FIELD.match(key) else key)
            value = field["value"]
            if _CONTROL.search(value) or (rule is not None and not rule.match(value)):
                return self._reply(error(47003, f"argument invalid! data.{key}.value invalid"))
        client_msg_id = body.get("client_msg_id")
        if client_msg_id:
            seen = self._dedup.get((openid, client_msg_id))
            if seen and self.now() - seen[1] < DEDUP_WINDOW:
                return self._reply({"errcode": 0, "errmsg": "ok", "msgid": seen[0]})
        msgid = next(self._msgids)
        if client_msg_id:
            self._dedup[(openid, client_msg_id)] = (msgid, self.now())
        self.messages.append({**body, "msgid": msgid})
        return self._reply({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    @staticmethod
    def _template_shape(body: dict[str, Any]) -> str | None:
        extra = set(body) - {"touser", "template_id", "url", "miniprogram", "data",
                             "client_msg_id"}
        if extra:
            return f"unexpected fields {sorted(extra)}"
        for key in ("touser", "template_id"):
            if not isinstance(body.get(key), str) or not body[key]:
                return f"{key} must be a non-empty string"
        if "url" in body and (not isinstance(body["url"], str)
                              or not body["url"].startswith(("http://", "https://"))):
            return "url must be an http(s) URL (leave it out for no link)"
        if "client_msg_id" in body and (not isinstance(body["client_msg_id"], str)
                                        or not body["client_msg_id"]):
            return "client_msg_id must be a non-empty string"
        if "miniprogram" in body:
            return "miniprogram is not used by Huimin"
        data = body.get("data")
        if not isinstance(data, dict) or not data:
            return "data must be a non-empty object"
        for key, field in data.items():
            if not isinstance(field, dict) or set(field) != {"value"}:
                return f'data.{key} must be exactly {{"value": ...}}'
            if not isinstance(field["value"], str):
                return f"data.{key}.value must be a string"
        return None

    async def _custom_send(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return self._reply(error(43002, "require POST method"))
        refused = self._check_token(request)
        if refused:
            return self._reply(refused)
        body = await self._json_body(request, CUSTOM_SEND)
        if body is None:
            return self._reply(error(47001, "data format error"))
        extra = set(body) - {"touser", "msgtype", "text", "customservice"}
        if extra:
            return self._reply(self._problem(f"custom/send: unexpected fields {sorted(extra)}"))
        if body.get("msgtype") != "text":
            return self._reply(self._problem("custom/send: the fake only speaks msgtype text"))
        text = body.get("text")
        if (not isinstance(text, dict) or set(text) != {"content"}
                or not isinstance(text["content"], str) or not text["content"]):
            return self._reply(self._problem('custom/send: text must be {"content": "..."}'))
        openid = body.get("touser")
        if not isinstance(openid, str) or not OPENID.match(openid):
            return self._reply(error(40003, "invalid openid"))
        injected = self._injected(openid)
        if injected:
            return injected
        self.texts.append(body)
        return self._reply({"errcode": 0, "errmsg": "ok"})

    async def _unknown(self, request: web.Request) -> web.Response:
        self.problems.append(f"unknown path {request.method} {request.path}")
        return self._reply(error(40066, "invalid url"))
