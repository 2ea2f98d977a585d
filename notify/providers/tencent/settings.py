"""Tencent Cloud SMS's settings: ``HUIMIN_SMS_TENCENT_*``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huimin.settings import Settings
from notify.providers.base import required, setting, sign_name, template_map
from notify.providers.tencent.send import TencentSms

NAME = "tencent"


def build(settings: Settings, county: Mapping[str, Any]) -> TencentSms:
    """The provider from ``HUIMIN_SMS_TENCENT_{ENDPOINT,REGION,SECRET_ID,SECRET_KEY,APP_ID,
    TEMPLATES}`` and the county's SMS signature."""
    signature = sign_name(county, NAME)
    return TencentSms(
        endpoint=setting(settings, "HUIMIN_SMS_TENCENT_ENDPOINT")
        or "https://sms.tencentcloudapi.com",
        region=setting(settings, "HUIMIN_SMS_TENCENT_REGION") or "ap-guangzhou",
        secret_id=required(settings, "HUIMIN_SMS_TENCENT_SECRET_ID", NAME),
        secret_key=required(settings, "HUIMIN_SMS_TENCENT_SECRET_KEY", NAME),
        app_id=required(settings, "HUIMIN_SMS_TENCENT_APP_ID", NAME),
        sign_name=signature,
        templates=template_map(settings, "HUIMIN_SMS_TENCENT_TEMPLATES", NAME))
