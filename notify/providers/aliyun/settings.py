"""Alibaba Cloud SMS's settings: ``HUIMIN_SMS_ALIYUN_*``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huimin.settings import Settings
from notify.providers.aliyun.send import AliyunSms
from notify.providers.base import required, setting, sign_name, template_map

NAME = "aliyun"


def build(settings: Settings, county: Mapping[str, Any]) -> AliyunSms:
    """The provider from ``HUIMIN_SMS_ALIYUN_{ENDPOINT,ACCESS_KEY_ID,ACCESS_KEY_SECRET,
    TEMPLATES}`` and the county's SMS signature."""
    signature = sign_name(county, NAME)
    return AliyunSms(
        endpoint=setting(settings, "HUIMIN_SMS_ALIYUN_ENDPOINT")
        or "https://dysmsapi.aliyuncs.com",
        access_key_id=required(settings, "HUIMIN_SMS_ALIYUN_ACCESS_KEY_ID", NAME),
        access_key_secret=required(settings, "HUIMIN_SMS_ALIYUN_ACCESS_KEY_SECRET", NAME),
        sign_name=signature,
        templates=template_map(settings, "HUIMIN_SMS_ALIYUN_TEMPLATES", NAME))
