"""An SMS reply that is not 退订/TD becomes a '请回电' case for the person's caseworker."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from huimin.casework.cases import Left, callback_case
from huimin.db import Database
from huimin.personal import Vault, mask_phone
from huimin.registry.models import Beneficiary

log = logging.getLogger(__name__)


async def sms_reply_case(db: Database, vault: Vault, phone: str, text: str,
                         now: datetime) -> Left | None:
    """Open (or join) the callback case of the registered person with this phone (the
    number as the provider gave it, already normalised); None when no registered person
    has it (nobody to route it to: the reply stays in the delivery events only)."""
    async with db.session() as session:
        beneficiary_id = await session.scalar(
            select(Beneficiary.id).where(Beneficiary.phone_hash.in_(vault.lookup_hashes(phone)))
            .order_by(Beneficiary.id).limit(1))
    if beneficiary_id is None:
        return None
    left = await callback_case(db, beneficiary_id, vault.encrypt(phone), mask_phone(phone),
                               text, now)
    log.info("SMS reply from %s: callback case %s%s", mask_phone(phone), left.case_id,
             f" ({left.refused})" if left.refused else "")
    return left
