"""Tencent's record of a message we sent, asked after a crash (DescribeSendRecordList).

Tencent keeps no reference of ours there (not the SessionContext), so a record is
matched by number, time window and content (Tencent stores the text with some digits
masked as ``*``: :func:`~notify.providers.base.same_text`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from notify.providers.base import same_text
from notify.providers.tencent.codes import failure_kind
from notify.sms import ProviderUnavailable, SentRecord, SmsMessage

LOOKUP_ACTION = "DescribeSendRecordList"  # one number's send records, last 72 hours
LOOKUP_LIMIT = 50  # records per DescribeSendRecordList call
SUBMITTED = frozenset({2, 3, 4})  # delivered, on its way, delivery failed (1: not submitted)


def lookup_body(app_id: str, number: str, since: datetime, until: datetime) -> dict[str, Any]:
    """The DescribeSendRecordList request for one mainland number and a time window."""
    return {"PhoneNumber": "+86" + number, "SmsSdkAppId": app_id,
            "BeginTime": int(since.timestamp()), "EndTime": int(until.timestamp()),
            "Limit": LOOKUP_LIMIT, "Offset": 0}


def sent_record(provider: str, response: dict[str, Any],
                message: SmsMessage) -> SentRecord | None:
    """The record of ``message`` in a DescribeSendRecordList answer, or None.

    A record is ours when it was submitted (SendStatus 1 means the submission failed:
    not sent) and its content is the text we would send. An error answer raises
    :class:`ProviderUnavailable` with the kind its code gives."""
    error = response.get("Error")
    if error is not None:
        code = str(error.get("Code", "")) if isinstance(error, dict) else ""
        raise ProviderUnavailable(provider, f"{LOOKUP_ACTION}: {code or 'error'}",
                                  kind=failure_kind(code), code=code or None)
    records = response.get("SendRecordSet")
    if not isinstance(records, list):
        raise ProviderUnavailable(provider, f"{LOOKUP_ACTION}: answer without SendRecordSet")
    for record in records:
        if not isinstance(record, dict) or record.get("SendStatus") not in SUBMITTED:
            continue
        if same_text(str(record.get("Content", "")), message.text):
            status = record["SendStatus"]
            return SentRecord(
                provider=provider, message_id=str(record.get("SerialNo") or "") or None,
                delivered={2: True, 4: False}.get(status),
                error=(str(record.get("StatusCode") or "") or "delivery failed")
                if status == 4 else None)
    return None
