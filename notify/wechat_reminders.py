"""Reminders by WeChat template message (the SMS side is :mod:`notify.dispatch`).

One template message to each follower bound to the person, each at its turn in the
WeChat rate; WeChat drops a repeat of the same ``client_msg_id``, so a message sent
again after a crash reaches nobody twice. Sent when WeChat accepted it for any one
follower; retried later when WeChat is unreachable or says "try again"; refused
otherwise (the caller then decides whether an SMS goes instead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from notify.decide import Claimed, Outcome, RetryPolicy, retry_later
from notify.models import FAILED, SENT
from notify.render import wechat_data
from notify.rules import RateLimiter
from notify.wechat import WeChatApi, WeChatUnavailable


class WeChatReminders:
    def __init__(self, api: WeChatApi, templates: Mapping[str, str],
                 county: Mapping[str, Any], *, rate: RateLimiter, retry: RetryPolicy,
                 clock: Callable[[], datetime]) -> None:
        self.api = api
        self.templates = dict(templates)  # reminder kind -> WeChat template id
        self.county = county
        self.rate, self.retry, self.clock = rate, retry, clock

    async def send(self, message: Claimed, openids: Sequence[str]) -> Outcome:
        data = wechat_data(message.kind, self.county, message.params)
        template_id = self.templates[message.kind]
        results = []
        for openid in openids:
            await self.rate.take()
            try:
                results.append(await self.api.send_template(
                    openid, template_id, data, client_msg_id=f"{message.key}:{openid}"[:64]))
            except WeChatUnavailable as exc:
                return self._retry_later(message, f"wechat: {exc}")
        delivered = [r for r in results if r.ok]
        if delivered:
            return Outcome(state=SENT, channel="wechat", provider="wechat",
                           message_id=str(delivered[0].msgid))
        if any(r.transient for r in results):
            return self._retry_later(message, f"wechat {results[0].errcode}")
        reason = "unfollowed" if all(r.unfollowed for r in results) else (
            f"wechat {results[0].errcode}")
        return Outcome(state=FAILED, channel="wechat", error=reason)

    def _retry_later(self, message: Claimed, error: str) -> Outcome:
        return retry_later(message, error, "wechat", self.clock(), self.retry)
