"""The words staff pages show for stored codes: FAQ fields, reminder kinds, states,
channels and failure reasons, who changed a registry record.

The templates read them as globals (``admin.web``); the modules behind the pages use
them too. This module imports nothing of the admin's, so any of them may use it.
"""

from __future__ import annotations

FAQ_FIELD_LABELS: dict[str, str] = {
    "id": "编号",
    "file": "所在文件",
    "category": "分类",
    "question": "标准问法",
    "alternatives": "其他问法",
    "keywords": "关键词",
    "answer": "答案",
    "details": "详细说明",
    "source": "依据",
    "reviewed": "审核日期",
}

KIND_LABELS = {
    "payout": "到账提醒",
    "recheck_due": "复核提醒",
    "recheck_overdue": "复核逾期提醒",
    "status_change": "办理进度通知",
    "verification_code": "短信验证码",
    "case_reply": "留言有回复（请回电）",
}
STATE_LABELS = {
    "queued": "排队等发",
    "sending": "正在发",
    "sent": "已发出",
    "delivered": "已送达",
    "failed": "失败",
    "skipped": "不发送",
}
CHANNEL_LABELS = {"wechat": "微信", "sms": "短信", None: "还没发", "": "还没发"}
SOURCE_LABELS = {
    "sms_reply": "短信回复退订",
    "wechat_menu": "公众号里关闭",
    "caseworker": "经办人员办理",
}

# The notifier's error texts, as staff should read them.
_REASONS = {
    "no phone": "没有登记手机号，也收不到微信",
    "opted out": "本人已退订提醒",
    "unfollowed": "已取消关注公众号，又没有手机号",
    "no such beneficiary": "名单里已经没有这个人",
    "no SMS provider available": "没有能用的短信通道",
    "rejected": "短信平台拒收",
    "expired": "过了时效，不再发",
}


def reason_text(error: str | None) -> str:
    """A failure reason in plain words (the technical text is shown beside it)."""
    if not error:
        return "没有记录原因"
    if error in _REASONS:
        return _REASONS[error]
    if error.startswith("gave up:"):
        return "试了多次都没发出去（短信或微信平台连不上）"
    if error.startswith("wechat"):
        return "微信拒绝发送"
    if error.startswith("failed:") or error.startswith("failed"):
        return "微信报告没有送达"
    return "短信平台报告发送失败"


def who_label(value: str | None) -> str:
    """Who did something in the registry, in words; never an openid."""
    if not value:
        return ""
    if value.startswith("import:staff:"):
        return f"导入名单（{value.removeprefix('import:staff:')}）"
    if value.startswith("import"):
        return "导入名单"
    if value.startswith("staff:"):
        return f"经办人员 {value.removeprefix('staff:')}"
    if value.startswith("wechat:"):
        return "微信用户在公众号里自助办理"
    return "系统"
