"""Aliyun's record of a message we sent, asked after a crash (QuerySendDetails).

QuerySendDetails lists one number's messages of one day (China time), each with the
``OutId`` we sent, so a record is ours when its OutId is our reference and its
template is the message's."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from huimin.clock import CHINA
from notify.providers.aliyun.codes import failure_kind
from notify.sms import ProviderUnavailable, SentRecord, SmsMessage

LOOKUP_ACTION = "QuerySendDetails"  # one number's messages of one day, with our OutId
LOOKUP_PAGE = 50  # records per QuerySendDetails page (the most Aliyun allows)


def lookup_days(since: datetime, until: datetime) -> Iterable[str]:
    """The China-time days (``YYYYMMDD``) the window touches, each once."""
    return dict.fromkeys(moment.astimezone(CHINA).strftime("%Y%m%d")
                         for moment in (since, until))


def lookup_params(number: str, day: str) -> dict[str, str]:
    """QuerySendDetails' own parameters (the common ones are the client's)."""
    return {"PhoneNumber": number, "SendDate": day, "PageSize": str(LOOKUP_PAGE),
            "CurrentPage": "1"}


def sent_record(provider: str, answer: dict[str, Any], message: SmsMessage,
                template: str) -> SentRecord | None:
    """The record of ``message`` (sent with ``template``) in one day's answer, or None;
    an answer other than OK raises :class:`ProviderUnavailable` with its code's kind."""
    code = str(answer.get("Code", ""))
    if code != "OK":
        raise ProviderUnavailable(provider, f"{LOOKUP_ACTION}: {code or 'no code'}",
                                  kind=failure_kind(code), code=code or None)
    details = answer.get("SmsSendDetailDTOs") or {}
    records = details.get("SmsSendDetailDTO") if isinstance(details, dict) else None
    for record in records if isinstance(records, list) else []:
        if (isinstance(record, dict) and record.get("OutId") == message.reference
                and record.get("TemplateCode") == template):
            status = record.get("SendStatus")
            return SentRecord(
                provider=provider, delivered={3: True, 2: False}.get(status),
                error=(str(record.get("ErrCode") or "") or "delivery failed")
                if status == 2 else None)
    return None
