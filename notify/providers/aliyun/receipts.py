"""Alibaba Cloud SMS's pushes: batches of status reports (``biz_id``) and replies
(``SmsUp``) to ``/notify/callbacks/aliyun/{status,reply}``. One BizId covers a whole
call of many numbers, so a status report is matched by its phone too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notify.providers.plugin import ReplyReport, StatusReport


class AliyunCallbacks:
    ack: Mapping[str, Any] = {"code": 0, "msg": "成功"}

    def status(self, item: Mapping[str, Any]) -> StatusReport:
        error = item.get("err_code")
        return StatusReport(
            message_id=str(item.get("biz_id") or ""),
            delivered=item.get("success") in (True, "true", "True"),
            error=None if error is None else str(error),
            phone=str(item.get("phone_number", "")),
            by_phone=True,
            reference=str(item.get("out_id") or "") or None)

    def reply(self, item: Mapping[str, Any]) -> ReplyReport:
        return ReplyReport(text=str(item.get("content", "")),
                           phone=str(item.get("phone_number", "")))
