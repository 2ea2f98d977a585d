"""A caseworker's reply reaching the person.

1. Within WeChat's 48 hours after the person's last message: a customer-service
   message (the shared access token and ``notify.wechat.WeChatApi``).
2. Past it, or when WeChat answers 45015 (window closed): a template message (kind
   ``case_reply`` in ``HUIMIN_WECHAT_TEMPLATES``) saying there is a reply and to send
   any message to read it; the bot then shows the reply (``reply_waiting``).
3. No WeChat (a callback case, no template configured, or the person no longer
   follows): for a registered person with a phone, an SMS asking them to call or reply,
   queued in the notifier's outbox (kind ``case_reply``, its text in
   ``content/templates/sms/case_reply.j2``): never the reply's text by SMS.
4. Otherwise the case says nobody could be reached: call them. A reply that did not
   reach a WeChat user (by any way) is still shown the next time they write.

WeChat is called directly from here, so the caseworker sees at once what happened;
the SMS goes through the outbox (its rate limits, quiet hours, opt-outs, provider
fall-over and receipts), and its state is read from the outbox row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from huimin.casework.models import (
    DELIVERY_FAILED,
    DELIVERY_READ,
    DELIVERY_SENT,
    DELIVERY_SMS,
    DELIVERY_WAITING,
    STAFF,
    Case,
    CaseMessage,
)
from huimin.db import Database
from huimin.registry.models import Beneficiary
from huimin.settings import Settings
from notify.models import OutboxMessage
from notify.plan import PlanReport, queue
from notify.render import wechat_data
from notify.wechat import AccessTokenStore, WeChatApi, WeChatError

log = logging.getLogger(__name__)
KIND = "case_reply"  # the outbox kind, WeChat template kind and SMS template name
WINDOW = timedelta(hours=48)  # WeChat: customer-service messages after the user's last one
WINDOW_CLOSED = 45015
REPLY_PREFIX = "工作人员回复您：\n"

DELIVERY_LABELS = {
    "sent": "已通过微信发给对方",
    "waiting": "已发模板消息通知对方，等对方发消息后看到回复",
    "read": "对方已看到回复",
    "sms": "已发短信请对方回电话或回短信（短信里没有回复内容）",
    "phone": "已电话联系",
    "failed": "没能送到，请打电话联系",
}
OUTBOX_LABELS = {"queued": "短信排队等发", "sending": "短信正在发", "sent": "短信已发出",
                 "delivered": "短信已送达", "failed": "短信发送失败", "skipped": "短信没有发"}


@dataclass
class ReplyChannels:
    """How replies leave: the WeChat API (None without AppID/AppSecret) and the
    template id of ``case_reply`` (None: no template configured)."""

    wechat: WeChatApi | None
    template_id: str | None
    county: Mapping[str, Any]
    _closers: tuple[Any, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, tokens: AccessTokenStore | None,
                      county: Mapping[str, Any]) -> ReplyChannels:
        """``tokens``: WeChat's shared access token, as the composition root keeps it
        (None without an AppID)."""
        template_id = settings.wechat_templates.get(KIND)
        if not (tokens is not None and settings.wechat_appid and settings.wechat_secret):
            return cls(None, template_id, county)
        api = WeChatApi.from_settings(settings, tokens)
        return cls(api, template_id, county, (api,))

    async def close(self) -> None:
        for api in self._closers:
            await api.close()


@dataclass(frozen=True)
class Delivered:
    delivery: str
    note: str | None = None


def in_window(case: Case, now: datetime) -> bool:
    last = case.last_person_at
    return last is not None and now - last < WINDOW


async def deliver(db: Database, channels: ReplyChannels, case_id: int, message_id: int,
                  now: datetime) -> Delivered:
    """Send one staff reply; its delivery state is written on the message (and the case
    marked as having a reply waiting when a template message went)."""
    async with db.session() as session:
        case = await session.get(Case, case_id)
        message = await session.get(CaseMessage, message_id)
        assert case is not None and message is not None
        openid, text, window = case.openid, message.text, in_window(case, now)
        beneficiary_id = case.beneficiary_id
    outcome = await _by_wechat(channels, openid, text, window, message_id)
    if outcome is None:
        outcome = await _by_sms(db, beneficiary_id, message_id, now)
    if outcome is None:
        outcome = Delivered(DELIVERY_FAILED, "微信和短信都通知不到对方" + (
            "：他下次给公众号发消息时会看到回复，也可以打电话联系" if openid else
            "：请打电话联系"))
    async with db.session() as session:
        message = await session.get(CaseMessage, message_id)
        case = await session.get(Case, case_id)
        assert message is not None and case is not None
        message.delivery, message.delivery_note = outcome.delivery, outcome.note
        if outcome.delivery == DELIVERY_SMS:
            message.outbox_key = f"{KIND}:{message_id}"
        if outcome.delivery == DELIVERY_WAITING or (
                outcome.delivery == DELIVERY_FAILED and openid is not None):
            case.reply_waiting = True  # shown the next time the person writes
    return outcome


async def _by_wechat(channels: ReplyChannels, openid: str | None, text: str, window: bool,
                     message_id: int) -> Delivered | None:
    """A customer-service message inside the window, else (or on 45015) a template
    message; None when WeChat cannot be used for this person at all."""
    if openid is None or channels.wechat is None:
        return None
    if window:
        try:
            result = await channels.wechat.send_text(openid, REPLY_PREFIX + text)
        except WeChatError as exc:
            log.warning("case reply %s: WeChat unreachable (%s)", message_id,
                        type(exc).__name__)
            return Delivered(DELIVERY_FAILED, "微信暂时连不上，请稍后点“重发”")
        if result.ok:
            return Delivered(DELIVERY_SENT)
        if result.errcode != WINDOW_CLOSED:
            if result.transient:
                return Delivered(DELIVERY_FAILED, f"微信暂时发不出去（{result.errcode}），"
                                                  "请稍后点“重发”")
            return None  # unfollowed, bad openid: try SMS
        log.info("case reply %s: WeChat says the 48-hour window is closed", message_id)
    if channels.template_id is None:
        return None
    data = wechat_data(KIND, channels.county, {})
    try:
        result = await channels.wechat.send_template(
            openid, channels.template_id, data, client_msg_id=f"{KIND}:{message_id}")
    except WeChatError as exc:
        log.warning("case reply %s: WeChat unreachable (%s)", message_id, type(exc).__name__)
        return Delivered(DELIVERY_FAILED, "微信暂时连不上，请稍后点“重发”")
    if result.ok:
        return Delivered(DELIVERY_WAITING)
    if result.transient:
        return Delivered(DELIVERY_FAILED, f"微信暂时发不出去（{result.errcode}），"
                                          "请稍后点“重发”")
    return None


async def _by_sms(db: Database, beneficiary_id: int | None, message_id: int,
                  now: datetime) -> Delivered | None:
    """Queue the 'please call or reply' SMS (never the reply's text) in the outbox."""
    if beneficiary_id is None:
        return None
    async with db.session() as session:
        phone = await session.scalar(select(Beneficiary.phone_encrypted)
                                     .where(Beneficiary.id == beneficiary_id))
        if not phone:
            return None
        await queue(session, [{
            "key": f"{KIND}:{message_id}", "kind": KIND, "beneficiary_id": beneficiary_id,
            "urgent": False, "params": {}, "not_before": now, "created_at": now,
            "held_for_quiet_hours": False}], PlanReport())
    return Delivered(DELIVERY_SMS)


async def outbox_states(db: Database, keys: list[str]) -> dict[str, str]:
    """The outbox state of each SMS sent for a reply."""
    if not keys:
        return {}
    async with db.session() as session:
        rows = (await session.execute(select(OutboxMessage.key, OutboxMessage.state)
                                      .where(OutboxMessage.key.in_(keys)))).all()
    return {key: state for key, state in rows}


async def waiting_replies(db: Database, openid: str) -> list[str]:
    """Replies a template message announced, marked read as they are handed to the bot
    to show (one indexed query when there are none)."""
    async with db.session() as session:
        cases = (await session.scalars(select(Case).where(
            Case.openid == openid, Case.reply_waiting.is_(True)))).all()
        if not cases:
            return []
        messages = (await session.scalars(select(CaseMessage).where(
            CaseMessage.case_id.in_([c.id for c in cases]),
            CaseMessage.author == STAFF,
            CaseMessage.delivery.in_([DELIVERY_WAITING, DELIVERY_FAILED]))
            .order_by(CaseMessage.id))).all()
        for message in messages:
            message.delivery = DELIVERY_READ
        for case in cases:
            case.reply_waiting = False
        return [m.text for m in messages]
