"""Query functions for the registry; other packages call these, not the tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.db import utcnow
from huimin.keys import rekey_beneficiary
from huimin.personal import Vault, mask_id, mask_phone
from huimin.registry.models import (
    AccessLogEntry,
    Application,
    Beneficiary,
    Binding,
    DelegateInvitation,
    StatusChange,
)


@dataclass(frozen=True)
class ApplicationRecord:
    """One application as the bureau exports it (clean, validated values)."""

    number: str
    name: str
    id_number: str
    phone: str | None
    township: str
    programme: str
    stage: str
    stage_date: date
    next_step: str = ""
    recheck_due: date | None = None
    monthly_amount: Decimal | None = None


async def save_application(session: AsyncSession, vault: Vault, record: ApplicationRecord,
                           source: str) -> str:
    """Insert or update one application and its beneficiary.

    Returns "added", "updated", "unchanged". A new application, or a changed
    stage, is recorded as a status change for the notifier.
    """
    id_hash = vault.lookup_hash(record.id_number)
    person = await session.scalar(select(Beneficiary).where(
        Beneficiary.id_hash.in_(vault.lookup_hashes(record.id_number))))
    if person is not None:
        # A row still under the previous key (keys are being rotated) moves to the
        # current one first, so what follows compares like with like.
        await rekey_beneficiary(session, vault, person)
    now = utcnow()
    person_values: dict[str, Any] = {"name": record.name, "township": record.township}
    if record.phone:
        person_values.update(phone_hash=vault.lookup_hash(record.phone),
                             phone_masked=mask_phone(record.phone))
    person_changed = False
    if person is None:
        person = Beneficiary(id_hash=id_hash, id_encrypted=vault.encrypt(record.id_number),
                             id_masked=mask_id(record.id_number), **person_values)
        if record.phone:
            person.phone_encrypted = vault.encrypt(record.phone)
        session.add(person)
        await session.flush()
    elif any(getattr(person, k) != v for k, v in person_values.items()):
        for key, value in person_values.items():
            setattr(person, key, value)
        if record.phone:
            person.phone_encrypted = vault.encrypt(record.phone)
        person.updated_at = now
        person_changed = True
    app = await session.scalar(select(Application).where(Application.number == record.number))
    values: dict[str, Any] = {
        "beneficiary_id": person.id, "programme": record.programme, "stage": record.stage,
        "stage_date": record.stage_date, "township": record.township,
        "next_step": record.next_step, "recheck_due": record.recheck_due,
        "monthly_amount": record.monthly_amount,
    }
    if app is None:
        app = Application(number=record.number, **values)
        session.add(app)
        await session.flush()
        session.add(StatusChange(application_id=app.id, from_stage=None, to_stage=record.stage,
                                 stage_date=record.stage_date, source=source))
        return "added"
    changed = {k: v for k, v in values.items() if _differs(getattr(app, k), v)}
    if not changed:
        return "updated" if person_changed else "unchanged"
    if "stage" in changed:
        session.add(StatusChange(application_id=app.id, from_stage=app.stage,
                                 to_stage=record.stage, stage_date=record.stage_date,
                                 source=source))
    for key, value in changed.items():
        setattr(app, key, value)
    app.updated_at = now
    return "updated"


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, Decimal) or isinstance(new, Decimal):
        return (Decimal(old) if old is not None else None) != (
            Decimal(new) if new is not None else None)
    return bool(old != new)


async def find_beneficiary(session: AsyncSession, id_hash: str | Sequence[str],
                           name: str) -> Beneficiary | None:
    """The beneficiary with this ID number and name, if both match.

    ``id_hash`` is the number's keyed hash, or all of them (``Vault.lookup_hashes``)
    while keys rotate: the row is found whichever key it is still under."""
    hashes = [id_hash] if isinstance(id_hash, str) else list(id_hash)
    person = await session.scalar(select(Beneficiary).where(Beneficiary.id_hash.in_(hashes)))
    if person is None or person.name != name:
        return None
    return person


async def active_binding(session: AsyncSession, openid: str) -> Binding | None:
    return await session.scalar(select(Binding).where(
        and_(Binding.openid == openid, Binding.revoked_at.is_(None))))


async def bind(session: AsyncSession, openid: str, beneficiary_id: int, role: str,
               granted_by: str) -> Binding:
    """Bind an openid to a beneficiary, replacing any earlier binding of that openid."""
    await revoke_bindings(session, openid=openid, by=granted_by)
    if role == "delegate":
        # One delegate per beneficiary: a new one replaces the old.
        await session.execute(
            update(Binding).where(and_(Binding.beneficiary_id == beneficiary_id,
                                       Binding.role == "delegate",
                                       Binding.revoked_at.is_(None)))
            .values(revoked_at=utcnow(), revoked_by=granted_by))
    binding = Binding(openid=openid, beneficiary_id=beneficiary_id, role=role,
                      granted_by=granted_by)
    session.add(binding)
    await session.flush()
    return binding


async def revoke_bindings(session: AsyncSession, *, by: str, openid: str | None = None,
                          beneficiary_id: int | None = None, role: str | None = None) -> int:
    """Revoke active bindings matching the filters; returns how many."""
    conditions = [Binding.revoked_at.is_(None)]
    if openid is not None:
        conditions.append(Binding.openid == openid)
    if beneficiary_id is not None:
        conditions.append(Binding.beneficiary_id == beneficiary_id)
    if role is not None:
        conditions.append(Binding.role == role)
    result = await session.execute(update(Binding).where(and_(*conditions))
                                   .values(revoked_at=utcnow(), revoked_by=by))
    return result.rowcount or 0


async def applications_of(session: AsyncSession, beneficiary_id: int) -> list[Application]:
    rows = await session.scalars(select(Application)
                                 .where(Application.beneficiary_id == beneficiary_id)
                                 .order_by(Application.stage_date.desc(), Application.id))
    return list(rows.all())


async def log_access(session: AsyncSession, actor: str, beneficiary_id: int | None,
                     action: str, **detail: Any) -> None:
    session.add(AccessLogEntry(actor=actor, beneficiary_id=beneficiary_id, action=action,
                               detail=detail))


async def create_invitation(session: AsyncSession, vault: Vault, beneficiary_id: int,
                            code: str, created_by: str,
                            valid_for: timedelta = timedelta(days=1),
                            now: datetime | None = None) -> DelegateInvitation:
    invitation = DelegateInvitation(
        beneficiary_id=beneficiary_id, code_hash=vault.code_hash(code, "invite"),
        created_by=created_by, expires_at=(now or utcnow()) + valid_for)
    session.add(invitation)
    await session.flush()
    return invitation


async def redeem_invitation(session: AsyncSession, vault: Vault, code: str,
                            used_by: str, now: datetime | None = None
                            ) -> DelegateInvitation | None:
    """Use an invitation unexpired at ``now`` and unused, once; None when there is none."""
    now = now or utcnow()
    result = await session.execute(
        update(DelegateInvitation)
        .where(and_(DelegateInvitation.code_hash.in_(vault.code_hashes(code, "invite")),
                    DelegateInvitation.used_at.is_(None),
                    DelegateInvitation.expires_at > now))
        .values(used_at=now, used_by=used_by)
        .returning(DelegateInvitation.id))
    invitation_id = result.scalar_one_or_none()
    if invitation_id is None:
        return None
    return await session.get(DelegateInvitation, invitation_id)


async def count_pending_changes(session: AsyncSession) -> int:
    """Status changes not yet announced (for the notifier and the admin overview)."""
    return int(await session.scalar(
        select(func.count()).select_from(StatusChange)
        .where(StatusChange.announced_at.is_(None))) or 0)


async def registered_phone_hashes(session: AsyncSession, vault: Vault, phone: str) -> list[str]:
    """The keyed hashes under which the registry holds ``phone`` (more than one only
    while keys rotate), or just the current hash when nobody has it."""
    found = set((await session.scalars(select(Beneficiary.phone_hash).where(
        Beneficiary.phone_hash.in_(vault.lookup_hashes(phone))))).all())
    return sorted(h for h in found if h) or [vault.lookup_hash(phone)]
