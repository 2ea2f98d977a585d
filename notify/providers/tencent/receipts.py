"""Tencent Cloud SMS's pushes: status reports (a JSON array, ``sid`` = our message id)
and replies (one JSON object), POSTed to ``/notify/callbacks/tencent/{status,reply}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notify.providers.plugin import ReplyReport, StatusReport


class TencentCallbacks:
    ack: Mapping[str, Any] = {"result": 0, "errmsg": "OK"}

    def status(self, item: Mapping[str, Any]) -> StatusReport:
        error = item.get("errmsg")
        return StatusReport(
            message_id=str(item.get("sid", "")),
            delivered=str(item.get("report_status", "")).upper() == "SUCCESS",
            error=None if error is None else str(error),
            phone=str(item.get("mobile") or ""))

    def reply(self, item: Mapping[str, Any]) -> ReplyReport:
        return ReplyReport(text=str(item.get("text", "")), phone=str(item.get("mobile", "")))
