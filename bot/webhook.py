"""The ``/wechat`` endpoint: WeChat's HTTP protocol and crypto, nothing else.

Checks, in order: the request is not a replay (timestamp within the window),
the signature is right (compared in constant time), the body is small enough,
the XML is well formed and declares no DOCTYPE or entities, and in safe mode
the encrypted payload's signature and AppId. Only then is the message parsed
and handed to :class:`bot.dialog.Bot`. Bad requests get 4xx, never 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from xml.etree.ElementTree import ParseError

from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import WeChatSigner

from bot.store import MessageLedger

log = logging.getLogger(__name__)
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
LateDelivery = Callable[[str, str], Awaitable[None]]


def sign(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the sorted, concatenated parts."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def signature_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


_KEY_LIMIT = 160  # handled_messages.key


def dedup_key(message: Any) -> str:
    """Sender + MsgId for messages (a MsgId is only unique per sender). For events,
    sender + CreateTime + Event + EventKey (+ MsgID, which template-job receipts carry):
    CreateTime is in whole seconds, so two menu taps within a second differ only by
    their EventKey, while WeChat's retry of an event repeats every one of these fields.
    A key too long for the ledger keeps its sender and time and hashes the rest."""
    if message.type != "event" and message.id:
        return f"m:{message.source}:{message.id}"
    created = int(message.create_time.timestamp()) if message.create_time else 0
    head = f"e:{message.source}:{created}:"
    tail = f"{getattr(message, 'event', '')}:{getattr(message, 'key', None) or ''}"
    if message.id:
        tail += f":{message.id}"
    if len(head) + len(tail) > _KEY_LIMIT:
        tail = "#" + hashlib.sha256(tail.encode()).hexdigest()
    return head + tail


# Fields read as plain text: each must be a leaf without attributes (xmltodict would
# turn anything else into a dict the rest of the bot cannot use).
TEXT_FIELDS = frozenset({
    "ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "MsgID", "Content",
    "Recognition", "Event", "EventKey", "Status", "Encrypt", "MediaId", "Format",
    "PicUrl", "Ticket", "Title", "Description", "Url"})
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([^\"']*)[\"']")


def _check_xml(body: bytes) -> Any:
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise web.HTTPBadRequest(text="XML with DOCTYPE or entity declarations is not accepted")
    declared = _DECLARED_ENCODING.match(body)
    if declared and declared.group(1).lower().replace(b"-", b"") != b"utf8":
        raise web.HTTPBadRequest(text="XML must be UTF-8")
    try:
        root = safe_fromstring(body, forbid_dtd=True, forbid_entities=True,
                               forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError):
        raise web.HTTPBadRequest(text="malformed XML") from None
    if root.tag != "xml":
        raise web.HTTPBadRequest(text="the root element must be <xml>")
    return root


def _check_fields(root: Any) -> None:
    """The fields read as text appear once, as plain text, in the message itself."""
    seen = set()
    for child in root:
        if child.tag not in TEXT_FIELDS:
            continue
        if child.tag in seen:
            raise web.HTTPBadRequest(text=f"<{child.tag}> appears twice")
        seen.add(child.tag)
        if len(child) or child.attrib:
            raise web.HTTPBadRequest(text=f"<{child.tag}> must be plain text")


_ID_LIMIT = 64  # openids are 28 characters, event names short; the ledger key is 160


def _checked_key(message: Any) -> str:
    """The message's dedup key, after checking the fields the bot stores. wechatpy
    converts MsgId and CreateTime lazily: it happens here, where a bad value is the
    sender's fault, and not later in the dialog."""
    try:
        msg_id, _created = int(message.id or 0), message.create_time
    except (ValueError, TypeError, OverflowError, OSError):
        raise web.HTTPBadRequest(text="bad MsgId or CreateTime") from None
    if not 0 <= msg_id < 2**64:
        raise web.HTTPBadRequest(text="bad MsgId or CreateTime")
    for name in ("source", "target", "event"):
        if len(str(getattr(message, name, "") or "")) > _ID_LIMIT:
            raise web.HTTPBadRequest(text=f"{name} too long")
    return dedup_key(message)


class WeChatEndpoint:
    """Handles GET (handshake) and POST (messages) on ``/wechat``."""

    def __init__(
        self,
        token: str,
        reply_for: Callable[[Any], Awaitable[str | None]],
        ledger: MessageLedger,
        *,
        appid: str | None = None,
        aes_key: str | None = None,
        replay_window: int = 300,
        reply_deadline: float = 4.0,
        max_body_bytes: int = 64 * 1024,
        deliver_late: LateDelivery | None = None,
        fallback: str = "",
    ) -> None:
        self.token = token
        self.reply_for = reply_for
        self.ledger = ledger
        self.appid = appid
        self.crypto = WeChatCrypto(token, aes_key, appid) if aes_key and appid else None
        self.replay_window = replay_window
        self.reply_deadline = reply_deadline
        self.max_body_bytes = max_body_bytes
        self.deliver_late = deliver_late
        self.fallback = fallback
        self.pending: set[asyncio.Task[Any]] = set()

    # ----- checks -----------------------------------------------------------
    def _verify(self, request: web.Request) -> tuple[str, str]:
        query = request.query
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not nonce:
            raise web.HTTPForbidden(text="missing or bad timestamp/nonce")
        if abs(time.time() - int(timestamp)) > self.replay_window:
            raise web.HTTPForbidden(text="timestamp out of range (replay?)")
        if not signature_ok(sign(self.token, timestamp, nonce), query.get("signature")):
            raise web.HTTPForbidden(text="bad signature")
        return timestamp, nonce

    async def _read_body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes,
                                                actual_size=request.content_length)
        body = await request.read()  # the app's client_max_size turns overflow into 413
        if not body.strip():
            raise web.HTTPBadRequest(text="empty body")
        return body

    def _decrypt(self, root: Any, timestamp: str, nonce: str, msg_signature: str | None,
                 body: bytes) -> bytes:
        if self.crypto is None:
            raise web.HTTPBadRequest(text="safe mode is not configured on this server")
        encrypted = root.findtext("Encrypt")
        if not encrypted:
            raise web.HTTPBadRequest(text="safe mode message without <Encrypt>")
        if not signature_ok(sign(self.token, timestamp, nonce, encrypted), msg_signature):
            raise web.HTTPForbidden(text="bad msg_signature")
        try:
            plain = self.crypto.decrypt_message(body, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise web.HTTPForbidden(text="bad msg_signature") from None
        except InvalidAppIdException:
            raise web.HTTPForbidden(text="message is for another AppId") from None
        except Exception:  # padding, base64 or key errors: the payload is garbage
            raise web.HTTPBadRequest(text="cannot decrypt message") from None
        return plain.encode() if isinstance(plain, str) else plain

    # ----- handlers ---------------------------------------------------------
    async def handshake(self, request: web.Request) -> web.Response:
        self._verify(request)
        return web.Response(text=request.query.get("echostr", ""))

    async def receive(self, request: web.Request) -> web.Response:
        timestamp, nonce = self._verify(request)
        body = await self._read_body(request)
        root = _check_xml(body)
        safe_mode = request.query.get("encrypt_type", "raw").lower() == "aes"
        if safe_mode:
            body = self._decrypt(root, timestamp, nonce, request.query.get("msg_signature"),
                                 body)
            root = _check_xml(body)
        _check_fields(root)
        try:
            message = parse_message(body.decode("utf-8"))
        except (KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="not a WeChat message") from None
        if message is None or not message.source:
            raise web.HTTPBadRequest(text="not a WeChat message")
        key = _checked_key(message)
        text = await self._reply_once(message, key)
        if not text:
            return web.Response(text="success")
        xml = TextReply(message=message, content=text).render()
        if safe_mode:
            assert self.crypto is not None
            xml = self.crypto.encrypt_message(xml, nonce, timestamp)
        return web.Response(text=xml, content_type="application/xml")

    # ----- dedup and deadline -----------------------------------------------
    async def _reply_once(self, message: Any, key: str) -> str:
        """The reply, computed once per message even when WeChat retries it.

        Claiming the message, making the reply and waiting for another process's
        reply all run under the deadline: past it WeChat gets "success" and a reply
        still being made is delivered later (never lost, never sent twice).
        """
        started = time.monotonic()
        task = asyncio.ensure_future(self._claim_and_reply(message, key, started))
        try:
            first, text = await asyncio.wait_for(asyncio.shield(task), self.reply_deadline)
        except TimeoutError:
            self.pending.add(task)
            task.add_done_callback(lambda t: self._late(t, key, str(message.source)))
            return ""
        if first:
            self._background(self.ledger.record(key, text))
        return text

    async def _claim_and_reply(self, message: Any, key: str,
                               started: float) -> tuple[bool, str]:
        if not await self.ledger.claim(key):
            # A retry: repeat the first reply (waiting for it if still being made).
            wait = max(self.reply_deadline - (time.monotonic() - started), 0.0)
            return False, await self.ledger.reply_of(key, wait) or ""
        return True, await self._safe_reply(message)

    def _background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _safe_reply(self, message: Any) -> str:
        try:
            return await self.reply_for(message) or ""
        except Exception:
            log.exception("reply failed for a %s message", message.type)
            return self.fallback

    def _late(self, task: asyncio.Task[tuple[bool, str]], key: str, openid: str) -> None:
        self.pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            return
        first, text = task.result()
        if first:  # only the process that made the reply delivers it
            self._background(self._finish_late(key, openid, text))

    async def _finish_late(self, key: str, openid: str, text: str) -> None:
        try:
            await self.ledger.record(key, "")  # WeChat got "success": retries repeat that
            if text and self.deliver_late is not None:
                await self.deliver_late(openid, text)
        except Exception:
            log.exception("could not deliver a late reply")

    async def drain(self) -> None:
        """Wait for replies still being made (on shutdown)."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
