"""Delivery receipts and replies from providers, and opt-outs.

* WeChat: ``TEMPLATESENDJOBFINISH`` events arrive through the bot's webhook.
* SMS providers POST status reports and replies to
  ``/notify/callbacks/<provider>/{status,reply}``; how each provider's pushes read is
  its own folder's ``receipts`` module (see :mod:`notify.providers`). A provider that
  pushes nothing (the console) or no provider of that name: 404.

Callback URLs carry ``?token=`` (``HUIMIN_CALLBACK_TOKEN``), compared in constant
time: providers do not sign these pushes. Without the setting the callbacks are
off (404). A reply of 退订/TD/T/N opts that phone out of SMS reminders; any other reply
from a registered phone becomes a '请回电' case for the person's caseworker
(``huimin.casework.callbacks``).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from sqlalchemy import and_, delete, or_, select, update

from huimin.casework.callbacks import sms_reply_case
from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import PersonalDataError, Vault, mask_phone, normalise_phone
from huimin.registry.models import Beneficiary
from huimin.registry.queries import registered_phone_hashes
from notify.models import DELIVERED, FAILED, SENT, DeliveryEvent, OptOut, OutboxMessage
from notify.providers import callback_format
from notify.providers.plugin import CallbackFormat

log = logging.getLogger(__name__)
STOP_WORDS = {"td", "t", "n", "退订", "退定", "取消", "不要发了", "别发了", "停止"}
MAX_CALLBACK_BYTES = 256 * 1024
MAX_JSON_DEPTH = 8  # a list of flat objects is all any provider sends


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (without recursing)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, level + 1) for child in children)
    return deepest


def is_stop_reply(text: str) -> bool:
    return re.sub(r"[\s\W_]+", "", text).lower() in STOP_WORDS


async def opt_out(db: Database, channel: str, address: str, source: str) -> bool:
    """Record that ``address`` (openid or phone hash) wants no more reminders."""
    async with db.session() as session:
        existing = await session.scalar(select(OptOut.id).where(and_(
            OptOut.channel == channel, OptOut.address == address)))
        if existing is not None:
            return False
        session.add(OptOut(channel=channel, address=address, source=source))
    return True


async def opt_in(db: Database, channel: str, address: str) -> bool:
    async with db.session() as session:
        result = await session.execute(delete(OptOut).where(and_(
            OptOut.channel == channel, OptOut.address == address)))
    return bool(result.rowcount)


async def mark(db: Database, provider: str, message_id: str, delivered: bool,
               detail: dict[str, Any], *, phone_hash: str | Sequence[str] | None = None,
               reference: str | None = None) -> int:
    """Move the sent message with this provider id to delivered or failed.

    Aliyun gives one id (BizId) to a whole call of many numbers, so its receipts
    also name the phone (``phone_hash``) and our reference (``OutId``): the message
    is the one to that phone with that id, or with that reference when a crash
    recovery recorded it without the id. ``phone_hash`` may be every hash of the
    phone (``Vault.lookup_hashes``) while keys rotate.
    """
    which = and_(OutboxMessage.provider == provider, OutboxMessage.state == SENT)
    if phone_hash is None:
        which = and_(which, OutboxMessage.provider_message_id == message_id)
    else:
        ids = [OutboxMessage.provider_message_id == message_id] if message_id else []
        if reference:
            ids.append(and_(OutboxMessage.sms_ref == reference,
                            OutboxMessage.provider_message_id.is_(None)))
        if not ids:
            return 0
        which = and_(which, or_(*ids), OutboxMessage.beneficiary_id.in_(
            select(Beneficiary.id).where(Beneficiary.phone_hash.in_(
                [phone_hash] if isinstance(phone_hash, str) else list(phone_hash)))))
    async with db.session() as session:
        result = await session.execute(
            update(OutboxMessage).where(which)
            .values(state=DELIVERED if delivered else FAILED,
                    delivered_at=utcnow() if delivered else None,
                    last_error=None if delivered else str(detail.get("error", ""))[:200])
            .returning(OutboxMessage.id))
        ids_done = [row[0] for row in result.all()]
        session.add(DeliveryEvent(provider=provider, kind="receipt",
                                  outbox_id=ids_done[0] if ids_done else None, detail=detail))
    return len(ids_done)


async def wechat_job_finished(db: Database, msgid: str, status: str) -> int:
    """``TEMPLATESENDJOBFINISH``: status is 'success' or 'failed:…'."""
    return await mark(db, "wechat", msgid, status == "success", {"status": status,
                                                                 "error": status})


class ProviderCallbacks:
    """aiohttp handlers for the SMS providers' pushes."""

    def __init__(self, db: Database, vault: Vault | None, token: str | None) -> None:
        self.db, self.vault, self.token = db, vault, token

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/notify/callbacks/{provider}/{kind}", self.handle)

    async def _payload(self, request: web.Request) -> Any:
        given = request.query.get("token", "")
        if not self.token:
            raise web.HTTPNotFound()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPForbidden(text="bad token")
        if (request.content_length or 0) > MAX_CALLBACK_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_CALLBACK_BYTES,
                                                actual_size=request.content_length or 0)
        try:
            payload = json.loads(await request.read())
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise web.HTTPBadRequest(text="body must be JSON") from None
        if _depth(payload) > MAX_JSON_DEPTH:
            raise web.HTTPBadRequest(text="JSON nested too deep")
        return payload

    async def handle(self, request: web.Request) -> web.Response:
        provider, kind = request.match_info["provider"], request.match_info["kind"]
        pushes = callback_format(provider)
        if pushes is None or kind not in {"status", "reply"}:
            raise web.HTTPNotFound()
        payload = await self._payload(request)
        items = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(item, dict) for item in items):
            raise web.HTTPBadRequest(text="expected JSON objects")
        for item in items:
            if kind == "status":
                await self._status(provider, pushes, item)
            else:
                await self._reply(provider, pushes, item)
        return web.json_response(dict(pushes.ack))

    async def _status(self, provider: str, pushes: CallbackFormat,
                      item: dict[str, Any]) -> None:
        report = pushes.status(item)
        detail = {"error": _short(report.error), "phone": _masked(report.phone)}
        if not report.by_phone:
            await mark(self.db, provider, report.message_id, report.delivered, detail)
            return
        phone_hash = self._phone_hash(report.phone)
        if phone_hash is None:  # cannot tell which of the call's numbers it is about
            async with self.db.session() as session:
                session.add(DeliveryEvent(provider=provider, kind="receipt", outbox_id=None,
                                          detail=detail, note="no readable phone number"))
            return
        await mark(self.db, provider, report.message_id, report.delivered, detail,
                   phone_hash=phone_hash, reference=report.reference)

    def _phone_hash(self, raw: str) -> tuple[str, ...] | None:
        if self.vault is None:
            return None
        try:
            return self.vault.lookup_hashes(normalise_phone(raw))
        except PersonalDataError:
            return None

    async def _reply(self, provider: str, pushes: CallbackFormat,
                     item: dict[str, Any]) -> None:
        reply = pushes.reply(item)
        text, phone_raw = reply.text, reply.phone
        note = None
        if is_stop_reply(text) and self.vault is not None:
            try:
                phone = normalise_phone(phone_raw)
            except PersonalDataError:
                note = "reply from an unreadable number"
            else:
                async with self.db.session() as session:
                    addresses = await registered_phone_hashes(session, self.vault, phone)
                for address in addresses:
                    await opt_out(self.db, "sms", address, "sms_reply")
                note = "opted out"
        elif self.vault is not None:
            note = await self._callback_case(phone_raw, text)
        async with self.db.session() as session:
            session.add(DeliveryEvent(provider=provider, kind="reply", outbox_id=None,
                                      detail={"phone": _masked(phone_raw), "text": text[:200]},
                                      note=note))
        log.info("SMS reply via %s from %s: %s", provider, _masked(phone_raw), note or "kept")

    async def _callback_case(self, phone_raw: str, text: str) -> str | None:
        """Any other reply from a registered phone: a '请回电' case for the person's
        caseworker (``casework``); the note kept with the delivery event."""
        assert self.vault is not None
        try:
            phone = normalise_phone(phone_raw)
        except PersonalDataError:
            return "reply from an unreadable number"
        left = await sms_reply_case(self.db, self.vault, phone, text, utcnow())
        if left is None:
            return None
        return f"callback case {left.case_id}" + (f" ({left.refused})" if left.refused else "")


def _short(value: Any) -> str | None:
    """A provider's error code or message as stored: text, at most 200 characters."""
    return None if value is None else str(value)[:200]


def _masked(raw: str) -> str:
    try:
        return mask_phone(normalise_phone(raw))
    except PersonalDataError:
        return "***"

