"""我的授权码: a family member asks the bot for a short code to read to a clerk, who types
it in the staff UI to let this WeChat account see a beneficiary's application status
(``huimin.registry.grants`` has the codes themselves)."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from datetime import datetime

from huimin.db import Database
from huimin.personal import Vault
from huimin.registry import grants

log = logging.getLogger(__name__)

ASKS = {"我的授权码", "授权码", "要授权码", "获取授权码", "我要授权码", "家人授权码"}
_NOISE = re.compile(r"[\s,，.。!！?？~～:：;；、“”\"']+")


def asks_for_code(text: str) -> bool:
    """Whether a message asks for a grant code (我的授权码, 授权码 …)."""
    return _NOISE.sub("", unicodedata.normalize("NFKC", text)) in ASKS


async def reply(db: Database, vault: Vault | None, openid: str, say: Callable[..., str],
                now: datetime) -> str:
    """The reply to 我的授权码: a new code, or why there is none."""
    if vault is None:
        log.error("HUIMIN_SECRET_KEY is not set: grant codes are unavailable")
        return say("status_unavailable.j2")
    code = await grants.issue(db, vault, openid, now)
    if code is None:
        return say("grant_code_limit.j2", per_day=grants.PER_DAY)
    return say("grant_code.j2", code=code, hours=int(grants.VALID_FOR.total_seconds() // 3600))
