"""Reminder texts: SMS from ``content/templates/sms``, WeChat template fields from
``content/templates/wechat``. Both are jinja2; ``huimin notify preview`` shows them."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2
import yaml

from content import TEMPLATES_DIR
from notify.sms import SmsMessage, provider_template_text, segments, sms_message
from notify.wechat import fit_template_data

KINDS = ("payout", "recheck_due", "recheck_overdue", "status_change", "case_reply")
SMS_ONLY_KINDS = ("verification_code",)
_fields_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


@cache
def wechat_fields(kind: str) -> dict[str, str]:
    """The field templates of one kind's WeChat template message."""
    path = TEMPLATES_DIR / "wechat" / f"{kind}.yaml"
    return {str(k): str(v) for k, v in yaml.safe_load(path.read_text(encoding="utf-8")).items()}


def wechat_data(kind: str, county: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, str]:
    """Rendered template fields, each within WeChat's limit for its field type."""
    return fit_template_data({
        field: _fields_env.from_string(template).render(county=county, **params)
        for field, template in wechat_fields(kind).items()})


def sms_for(kind: str, county: Mapping[str, Any], phone: str, params: Mapping[str, str],
            reference: str, urgent: bool = False) -> SmsMessage:
    return sms_message(kind, county, phone, params, reference=reference, urgent=urgent)


SAMPLE_PARAMS: dict[str, dict[str, str]] = {
    "payout": {"programme": "低保", "month": "11月", "amount": "625.00"},
    "recheck_due": {"programme": "低保", "due": "12月20日", "days": "14"},
    "recheck_overdue": {"programme": "低保", "due": "11月20日"},
    "status_change": {"programme": "低保", "number": "LZ-2026-0017", "stage": "公示",
                      "stage_words": "正在村里公示"},
    "verification_code": {"code": "246810"},
    "case_reply": {},  # a caseworker replied (notify.case_replies): never the reply's text
}


def preview(county: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each kind rendered with sample values: SMS text, length, segments, WeChat fields,
    and the template text to register with each SMS provider."""
    rows = []
    for kind in KINDS + SMS_ONLY_KINDS:
        params = SAMPLE_PARAMS[kind]
        sms = sms_for(kind, county, "13800138000", params, reference="preview")
        data = wechat_data(kind, county, params) if kind in KINDS else {}
        rows.append({"kind": kind, "sms": sms.text, "chars": len(sms.text),
                     "segments": segments(sms.text), "wechat": data,
                     "tencent": provider_template_text(kind, county, "tencent"),
                     "aliyun": provider_template_text(kind, county, "aliyun")})
    return rows
