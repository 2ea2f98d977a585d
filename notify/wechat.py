"""WeChat's server API: the shared access token, template and customer-service messages.

The access token
----------------
Every call to WeChat's server API carries an ``access_token``. We get it from
``POST /cgi-bin/stable_token`` (getStableAccessToken), which WeChat documents as:

* valid up to 7200 s (``expires_in``); stored in at most 512 characters;
* normal mode (``force_refresh: false``): repeated calls return the *same* token
  while it is valid; in its last 5 minutes a call returns the next token (the
  old one keeps working until it expires);
* force-refresh mode invalidates the previous token at once, is limited to 20
  calls a day and is ignored when repeated within 30 s. We only use it after
  WeChat rejected a token (errcode 40001, 40014 or 42001) and a normal-mode
  call gave us that same rejected token back, and at most once per send.

All bot and worker processes share one token through an :class:`AccessTokenStore`
(Redis when ``HUIMIN_REDIS_URL`` is set, else the ``wechat_tokens`` table; the composition
root, :mod:`huimin.wiring.resources`, chooses). A
refresh happens under the store's cross-process lock and re-reads the store
first, so a fleet of processes makes one ``stable_token`` call, not one each.

Messages
--------
:meth:`WeChatApi.send_template` posts a template message (usable any time the
user follows the account); :meth:`WeChatApi.send_text` posts a customer-service
text message (only within 48 hours of the user's last message). Both return a
:class:`TemplateResult`; WeChat's own refusals are results, not exceptions, and
are classified as *permanent* (never retry: not following, bad openid, bad
template or data) or transient (retry later: busy, quota). Only an unreachable
WeChat (network error, timeout, HTTP error status, a non-JSON body) raises
:class:`WeChatUnavailable`.

Secrets: neither the AppSecret nor an access token is ever logged or put in an
exception message (URLs with ``?access_token=`` never leave this module).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp
from sqlalchemy import String, Text, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from huimin.clock import as_utc, utcnow
from huimin.db import AwareDateTime, Base, Database, dialect_insert, upsert
from huimin.metrics import TOKEN_REFRESHES
from huimin.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# A cached token is used only while it has more than this left: WeChat hands out
# the next token in normal mode during the last 5 minutes of the current one.
REFRESH_MARGIN = 300.0
LOCK_TTL = 30.0  # seconds a refresh lock is held at most (a crashed holder frees it)
LOCK_WAIT = 10.0  # seconds a process waits for another one's refresh
_POLL = 0.05

# errcodes meaning "this access token is not (or no longer) valid".
TOKEN_INVALID = frozenset({
    40001,  # invalid credential, access_token is invalid or not latest
    40014,  # invalid access_token
    42001,  # access_token expired
})
UNFOLLOWED = 43004  # require subscribe: the user does not follow the account
# Refusals that will not change by retrying the same message.
PERMANENT = frozenset({
    UNFOLLOWED,
    40003,  # invalid openid (not ours, or malformed)
    40037,  # invalid template_id
    47003,  # argument invalid: a data value does not fit its field type
    45015,  # customer-service message: the 48-hour window is closed, or unfollowed
})
# Refusals worth retrying later.
TRANSIENT = frozenset({
    -1,  # system busy
    45009,  # daily API quota reached
    45011,  # per-minute API quota reached
    45047,  # customer-service message: too many messages since the user last wrote
})

# Category templates ("类目模板") name each field after its type, e.g. thing1,
# character_string2, time3; WeChat refuses the whole message (errcode 47003)
# when a value breaks its type's rule. Maximum length in characters by type
# (None: the value is a format - a time, a date, an amount - that must not be cut,
# so it is left as it is and must be made right by the caller):
#   thing             20 characters: Chinese, letters, digits or symbols
#   character_string  32 digits, letters or symbols (no Chinese)
#   phrase             5 Chinese characters only
#   number            32 digits, may have a decimal point
#   letter            32 letters
#   symbol             5 symbols
#   name              10 Chinese characters (20 for purely Latin names; we cut at 10)
#   car_number         8 characters
#   phone_number      17 digits and symbols
#   time, date        a time / date format, kept
#   amount            currency symbol + digits (may end with 元), kept
# Older templates use keyword1, first, remark …: WeChat folds those itself, so
# fields with an unknown type prefix are left alone.
TEMPLATE_LIMITS: dict[str, int | None] = {
    "thing": 20,
    "character_string": 32,
    "phrase": 5,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "name": 10,
    "car_number": 8,
    "phone_number": 17,
    "time": None,
    "date": None,
    "amount": None,
}
_FIELD_TYPE = re.compile(r"^([a-z_]+?)_?\d*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
ELLIPSIS = "…"


def field_type(key: str) -> str:
    """'thing12' -> 'thing', 'character_string3' -> 'character_string'."""
    match = _FIELD_TYPE.match(key)
    return match.group(1) if match else key


def fit_template_data(data: Mapping[str, Any]) -> dict[str, str]:
    """Template values made to fit WeChat's limits for their field type.

    Control characters (newlines included, which WeChat refuses) become single
    spaces; values longer than :data:`TEMPLATE_LIMITS` allows are cut, ``thing``
    values ending with "…" to show it. Time, date and amount values are kept.
    """
    fitted: dict[str, str] = {}
    for key, raw in data.items():
        value = _CONTROL.sub(" ", str(raw)).strip()
        limit = TEMPLATE_LIMITS.get(field_type(key))
        if limit is not None and len(value) > limit:
            if field_type(key) == "thing":
                value = value[:limit - 1].rstrip() + ELLIPSIS
            else:
                value = value[:limit]
        fitted[key] = value
    return fitted


class WeChatError(Exception):
    """Something went wrong talking to WeChat."""


class WeChatUnavailable(WeChatError):
    """WeChat could not be reached or answered nonsense: try again later."""


class WeChatTokenError(WeChatError):
    """WeChat refused to issue an access token (wrong AppID/AppSecret, IP not
    whitelisted …): a configuration problem, retrying will not help."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"stable_token refused: errcode {errcode} ({errmsg})")
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass(frozen=True)
class TemplateResult:
    """WeChat's answer to one message (template or customer-service)."""

    ok: bool
    msgid: int | None = None
    errcode: int = 0
    errmsg: str = "ok"
    unfollowed: bool = False  # 43004: the user no longer follows the account
    permanent: bool = False  # retrying this message will not help

    @property
    def transient(self) -> bool:
        """Refused for now (busy, quota, unknown error): worth retrying later."""
        return not self.ok and not self.permanent

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> TemplateResult:
        errcode = _errcode(data)
        msgid = data.get("msgid")
        return cls(ok=errcode == 0, msgid=int(msgid) if msgid is not None else None,
                   errcode=errcode, errmsg=str(data.get("errmsg", "")),
                   unfollowed=errcode == UNFOLLOWED, permanent=errcode in PERMANENT)


# --- the shared token --------------------------------------------------------------


class TokenLockTimeout(WeChatUnavailable):
    """Another process held the refresh lock for longer than we would wait."""


class AccessTokenStore(Protocol):
    """Where all processes keep the current access token, and the lock that
    makes only one of them refresh it at a time."""

    async def get(self) -> tuple[str, datetime] | None:
        """The stored token and when it expires (aware UTC), or None."""

    async def put(self, token: str, expires_at: datetime) -> None: ...

    def refresh_lock(self) -> Any:
        """``async with store.refresh_lock():`` holds the cross-process lock;
        raises :class:`TokenLockTimeout` after waiting ``LOCK_WAIT`` seconds."""


_RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""


class RedisTokenStore:
    """The token in one Redis key (expiring with it); the lock is ``SET NX PX``
    with a random value, released only by its owner (compare-and-delete script)."""

    def __init__(self, redis: Any, appid: str, prefix: str = "huimin:wechat:",
                 lock_ttl: float = LOCK_TTL, wait: float = LOCK_WAIT) -> None:
        self.redis = redis
        self.key = f"{prefix}token:{appid}"
        self.lock_key = f"{prefix}lock:{appid}"
        self.lock_ttl = lock_ttl
        self.wait = wait

    async def get(self) -> tuple[str, datetime] | None:
        raw = await self.redis.get(self.key)
        if not raw:
            return None
        value = json.loads(raw)
        return value["token"], datetime.fromtimestamp(value["expires_at"], UTC)

    async def put(self, token: str, expires_at: datetime) -> None:
        ttl_ms = int((as_utc(expires_at) - utcnow()).total_seconds() * 1000)
        if ttl_ms <= 0:
            return
        value = json.dumps({"token": token, "expires_at": as_utc(expires_at).timestamp()})
        await self.redis.set(self.key, value, px=ttl_ms)

    @asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        owner = secrets.token_hex(16)
        deadline = time.monotonic() + self.wait
        while not await self.redis.set(self.lock_key, owner, nx=True,
                                       px=int(self.lock_ttl * 1000)):
            if time.monotonic() >= deadline:
                raise TokenLockTimeout("another process is refreshing the WeChat token")
            await asyncio.sleep(_POLL)
        try:
            yield
        finally:
            await self.redis.eval(_RELEASE, 1, self.lock_key, owner)


class WeChatToken(Base):
    """The shared access token and its refresh lock (when Redis is not configured).

    One row per AppID. A process owns the lock while ``lock_until`` is in the
    future and ``lock_owner`` is its random id; a crashed owner's lock lapses.
    """

    __tablename__ = "wechat_tokens"

    appid: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str | None] = mapped_column(Text, nullable=True)  # WeChat: up to 512
    expires_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)
    lock_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lock_until: Mapped[datetime | None] = mapped_column(AwareDateTime(), nullable=True)


class DatabaseTokenStore:
    """The token in the ``wechat_tokens`` table; the lock is claimed with a
    conditional UPDATE whose row count says whether this process won."""

    def __init__(self, db: Database, appid: str, lock_ttl: float = LOCK_TTL,
                 wait: float = LOCK_WAIT) -> None:
        self.db = db
        self.appid = appid
        self.lock_ttl = lock_ttl
        self.wait = wait

    async def get(self) -> tuple[str, datetime] | None:
        async with self.db.session() as session:
            row = (await session.execute(
                select(WeChatToken.token, WeChatToken.expires_at)
                .where(WeChatToken.appid == self.appid))).first()
        if row is None or not row.token or row.expires_at is None:
            return None
        return row.token, row.expires_at

    async def put(self, token: str, expires_at: datetime) -> None:
        async with self.db.session() as session:
            await upsert(session, WeChatToken, {
                "appid": self.appid, "token": token, "expires_at": expires_at,
            }, key="appid")

    async def _ensure_row(self) -> None:
        async with self.db.session() as session:
            await session.execute(dialect_insert(session, WeChatToken).values(appid=self.appid)
                                  .on_conflict_do_nothing(index_elements=["appid"]))

    async def _claim(self, owner: str) -> bool:
        now = utcnow()
        async with self.db.session() as session:
            result = await session.execute(
                update(WeChatToken)
                .where(WeChatToken.appid == self.appid,
                       or_(WeChatToken.lock_until.is_(None), WeChatToken.lock_until < now))
                .values(lock_owner=owner, lock_until=now + timedelta(seconds=self.lock_ttl)))
            return result.rowcount == 1

    async def _release(self, owner: str) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(WeChatToken)
                .where(WeChatToken.appid == self.appid, WeChatToken.lock_owner == owner)
                .values(lock_owner=None, lock_until=None))

    @asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        owner = secrets.token_hex(16)
        await self._ensure_row()
        deadline = time.monotonic() + self.wait
        while not await self._claim(owner):
            if time.monotonic() >= deadline:
                raise TokenLockTimeout("another process is refreshing the WeChat token")
            await asyncio.sleep(_POLL)
        try:
            yield
        finally:
            await self._release(owner)


# --- the API client ----------------------------------------------------------------


def _errcode(data: Mapping[str, Any]) -> int:
    try:
        return int(data.get("errcode", 0))
    except (TypeError, ValueError):
        return -1


class WeChatApi:
    """Calls WeChat's server API with a token shared by every process."""

    def __init__(self, api_base: str, appid: str, secret: str, store: AccessTokenStore,
                 session: aiohttp.ClientSession | None = None, timeout: float = 10,
                 clock: Callable[[], float] = time.time) -> None:
        self.api_base = api_base.rstrip("/")
        self.appid = appid
        self._secret = secret
        self.store = store
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._cached: tuple[str, float] | None = None  # (token, expires at, epoch)
        self._local_lock = asyncio.Lock()  # one refresh at a time inside this process

    @classmethod
    def from_settings(cls, settings: Settings, store: AccessTokenStore,
                      session: aiohttp.ClientSession | None = None,
                      timeout: float = 10) -> WeChatApi:
        if not settings.wechat_appid or not settings.wechat_secret:
            raise SettingsError("HUIMIN_WECHAT_APPID and HUIMIN_WECHAT_SECRET are needed to "
                                "send WeChat messages")
        return cls(settings.wechat_api_base, settings.wechat_appid, settings.wechat_secret,
                   store, session=session, timeout=timeout)

    def __repr__(self) -> str:  # never show the secret
        return f"WeChatApi(api_base={self.api_base!r}, appid={self.appid!r})"

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WeChatApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP --

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    async def _post(self, path: str, payload: Mapping[str, Any],
                    token: str | None = None) -> dict[str, Any]:
        """POST JSON (UTF-8, Chinese unescaped, like WeChat's own samples) and
        return the decoded answer. Errors never carry the URL (it holds the token)."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        params = {"access_token": token} if token else None
        try:
            async with self._http().post(
                    self.api_base + path, params=params, data=body, timeout=self._timeout,
                    headers={"Content-Type": "application/json; charset=utf-8"}) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WeChatUnavailable(f"{path}: {type(exc).__name__}") from None
        if status != 200:
            raise WeChatUnavailable(f"{path}: HTTP {status}")
        try:
            # WeChat labels its JSON text/plain at times, and may leave raw control
            # characters in strings.
            data = json.loads(raw.decode("utf-8", "replace"), strict=False)
        except ValueError:
            raise WeChatUnavailable(f"{path}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise WeChatUnavailable(f"{path}: the answer is not a JSON object")
        return data

    # -- the token --

    def _fresh(self, expires_at: float) -> bool:
        return expires_at - self._clock() > REFRESH_MARGIN

    async def _stored(self) -> tuple[str, float] | None:
        found = await self.store.get()
        if found is None:
            return None
        token, expires_at = found
        entry = (token, expires_at.timestamp())
        self._cached = entry
        return entry

    async def access_token(self) -> str:
        """A token with more than 5 minutes left, refreshing it when needed."""
        if self._cached and self._fresh(self._cached[1]):
            return self._cached[0]
        stored = await self._stored()
        if stored and self._fresh(stored[1]):
            return stored[0]
        return await self._refresh(rejected=None)

    async def _refresh(self, rejected: str | None) -> str:
        """Get a new token under the cross-process lock.

        ``rejected`` is a token WeChat just refused: when the store already holds
        another one (some process refreshed meanwhile) that one is used; when a
        normal-mode call hands the rejected token back, one force refresh follows.
        """
        async with self._local_lock:
            stored = await self._stored()
            if stored and self._fresh(stored[1]) and stored[0] != rejected:
                return stored[0]
            try:
                async with self.store.refresh_lock():
                    stored = await self._stored()
                    if stored and self._fresh(stored[1]) and stored[0] != rejected:
                        return stored[0]
                    token, expires_at = await self._fetch(force=False)
                    if rejected is not None and token == rejected:
                        log.warning("WeChat rejected its current access token; forcing a "
                                    "new one")
                        token, expires_at = await self._fetch(force=True)
                    await self.store.put(token, datetime.fromtimestamp(expires_at, UTC))
                    self._cached = (token, expires_at)
                    return token
            except TokenLockTimeout:
                stored = await self._stored()
                if stored and self._fresh(stored[1]) and stored[0] != rejected:
                    return stored[0]
                raise

    async def _fetch(self, force: bool) -> tuple[str, float]:
        data = await self._post("/cgi-bin/stable_token", {
            "grant_type": "client_credential", "appid": self.appid, "secret": self._secret,
            "force_refresh": force,
        })
        errcode = _errcode(data)
        if errcode or not data.get("access_token"):
            errmsg = str(data.get("errmsg", ""))
            if errcode in TRANSIENT:
                raise WeChatUnavailable(f"stable_token: errcode {errcode} ({errmsg})")
            raise WeChatTokenError(errcode, errmsg)
        try:
            expires_in = float(data.get("expires_in", 7200))
        except (TypeError, ValueError):
            expires_in = 7200.0
        log.info("fetched a WeChat access token (force_refresh=%s, expires in %ds)",
                 force, int(expires_in))
        TOKEN_REFRESHES.labels(force=str(force).lower()).inc()
        return str(data["access_token"]), self._clock() + expires_in

    # -- messages --

    async def _send(self, path: str, payload: Mapping[str, Any]) -> TemplateResult:
        token = await self.access_token()
        data = await self._post(path, payload, token)
        if _errcode(data) in TOKEN_INVALID:
            log.info("WeChat refused the access token (errcode %s); refreshing it",
                     _errcode(data))
            self._cached = None
            token = await self._refresh(rejected=token)
            data = await self._post(path, payload, token)
        result = TemplateResult.from_response(data)
        if not result.ok:
            log.warning("WeChat %s refused: errcode %s (%s)%s", path, result.errcode,
                        result.errmsg, " permanent" if result.permanent else "")
        return result

    async def send_template(self, openid: str, template_id: str, data: Mapping[str, Any],
                            url: str | None = None, *,
                            client_msg_id: str | None) -> TemplateResult:
        """Send a template message. Values are fitted with :func:`fit_template_data`.

        ``client_msg_id`` makes the send idempotent: WeChat delivers one message
        per openid + client_msg_id (for 10 minutes), so a retry after a lost answer
        does not notify the user twice.
        """
        payload: dict[str, Any] = {"touser": openid, "template_id": template_id}
        if url:
            payload["url"] = url
        payload["data"] = {key: {"value": value}
                           for key, value in fit_template_data(data).items()}
        if client_msg_id:
            payload["client_msg_id"] = client_msg_id
        return await self._send("/cgi-bin/message/template/send", payload)

    async def send_text(self, openid: str, content: str) -> TemplateResult:
        """Send a customer-service text message (within 48 h of the user's last message;
        errcode 45015 otherwise)."""
        return await self._send("/cgi-bin/message/custom/send", {
            "touser": openid, "msgtype": "text", "text": {"content": content},
        })
