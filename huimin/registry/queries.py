"""Query functions for the registry; other packages call these, not the tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.clock import utcnow
from huimin.keys import rekey_beneficiary
from huimin.personal import Vault, mask_id, mask_phone
from huimin.registry import STAGES
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


# An import never silently moves a stage backwards, or overwrites what a member of staff
# set in the UI's stage form, unless staff confirmed that row (in the admin's preview, or
# with the CLI's --overwrite). A row held back is reported, not saved, and announces
# nothing.
UI_FIELDS = ("stage", "stage_date", "next_step", "recheck_due")  # the stage form's fields
HELD = "held:"  # an outcome: the row was held back, and why
Confirmed = Mapping[str, str] | bool  # {application number: its stage when shown}, or all


def stage_rank(stage: str) -> int:
    """A stage's place in the order (content/stages.yaml): the in-progress stages in
    turn, then the three outcomes, all after them and level with each other."""
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


def import_conflict(app: Application, record: ApplicationRecord) -> str | None:
    """Why importing ``record`` over ``app`` needs confirming (plain Chinese), or None:
    it moves the stage backwards, or it changes what a member of staff set in the UI
    and the list is not newer (its stage date is not later than the one staff set)."""
    if stage_rank(record.stage) < stage_rank(app.stage):
        reason = f"环节会从“{app.stage}”退回“{record.stage}”"
        if (app.changed_by or "").startswith("staff:"):
            reason += f"（“{app.stage}”是经办人员 {app.changed_by[6:]} 在系统里改的）"
        return reason
    if not (app.changed_by or "").startswith("staff:") or record.stage_date > app.stage_date:
        return None
    labels = {"stage": "环节", "stage_date": "环节日期", "next_step": "下一步",
              "recheck_due": "复核日期"}
    changed = [labels[k] for k in UI_FIELDS if _differs(getattr(app, k), getattr(record, k))]
    if not changed:
        return None
    return (f"会改掉经办人员 {app.changed_by[6:]} 在系统里改过的{'、'.join(changed)}"
            f"（名单的环节日期不比系统里的新）")


def is_confirmed(confirmed: Confirmed, app: Application) -> bool:
    """Whether staff confirmed importing over ``app`` as it stands now (a row confirmed
    while it was at another stage is not: someone changed it again since)."""
    if isinstance(confirmed, bool):
        return confirmed
    return confirmed.get(app.number) == app.stage


def held_by(app: Application | None, record: ApplicationRecord,
            confirmed: Confirmed) -> str | None:
    """The outcome of a row held back (HELD + why), or None when it may be saved."""
    if app is None:
        return None
    conflict = import_conflict(app, record)
    if conflict is None or is_confirmed(confirmed, app):
        return None
    return HELD + conflict


def new_person(vault: Vault, record: ApplicationRecord, id_hash: str) -> Beneficiary:
    person = Beneficiary(id_hash=id_hash, id_encrypted=vault.encrypt(record.id_number),
                         id_masked=mask_id(record.id_number), **_person_values(vault, record))
    if record.phone:
        person.phone_encrypted = vault.encrypt(record.phone)
    return person


def update_person(vault: Vault, person: Beneficiary, record: ApplicationRecord,
                  now: datetime) -> bool:
    """Bring a stored person up to the list's name, township and phone; whether
    anything changed."""
    values = _person_values(vault, record)
    if not any(getattr(person, k) != v for k, v in values.items()):
        return False
    for key, value in values.items():
        setattr(person, key, value)
    if record.phone:
        person.phone_encrypted = vault.encrypt(record.phone)
    person.updated_at = now
    return True


def _person_values(vault: Vault, record: ApplicationRecord) -> dict[str, Any]:
    values: dict[str, Any] = {"name": record.name, "township": record.township}
    if record.phone:
        values.update(phone_hash=vault.lookup_hash(record.phone),
                      phone_masked=mask_phone(record.phone))
    return values


def application_values(record: ApplicationRecord, beneficiary_id: int) -> dict[str, Any]:
    return {
        "beneficiary_id": beneficiary_id, "programme": record.programme,
        "stage": record.stage, "stage_date": record.stage_date,
        "township": record.township, "next_step": record.next_step,
        "recheck_due": record.recheck_due, "monthly_amount": record.monthly_amount,
    }


def update_application(session: AsyncSession, app: Application, values: dict[str, Any],
                       source: str, now: datetime) -> bool:
    """Apply an imported row's values to a stored application, recording a changed
    stage for the notifier; whether anything changed."""
    changed = {k: v for k, v in values.items() if _differs(getattr(app, k), v)}
    if not changed:
        return False
    if "stage" in changed:
        session.add(StatusChange(application_id=app.id, from_stage=app.stage,
                                 to_stage=values["stage"], stage_date=values["stage_date"],
                                 source=source))
    for key, value in changed.items():
        setattr(app, key, value)
    app.updated_at = now
    app.changed_by = source[:40]
    return True


async def save_application(session: AsyncSession, vault: Vault, record: ApplicationRecord,
                           source: str, confirmed: Confirmed = False) -> str:
    """Insert or update one application and its beneficiary.

    Returns "added", "updated", "unchanged", or HELD + why when the row would move the
    stage backwards or overwrite a change made in the UI and ``confirmed`` does not
    cover it (nothing is saved then). A new application, or a changed stage, is
    recorded as a status change for the notifier.
    """
    id_hash = vault.lookup_hash(record.id_number)
    app = await session.scalar(select(Application).where(Application.number == record.number))
    held = held_by(app, record, confirmed)
    if held is not None:
        return held
    person = await session.scalar(select(Beneficiary).where(
        Beneficiary.id_hash.in_(vault.lookup_hashes(record.id_number))))
    if person is not None:
        # A row still under the previous key (keys are being rotated) moves to the
        # current one first, so what follows compares like with like.
        await rekey_beneficiary(session, vault, person)
    now = utcnow()
    person_changed = False
    if person is None:
        person = new_person(vault, record, id_hash)
        session.add(person)
        await session.flush()
    else:
        person_changed = update_person(vault, person, record, now)
    values = application_values(record, person.id)
    if app is None:
        app = Application(number=record.number, changed_by=source[:40], **values)
        session.add(app)
        await session.flush()
        session.add(StatusChange(application_id=app.id, from_stage=None, to_stage=record.stage,
                                 stage_date=record.stage_date, source=source))
        return "added"
    if update_application(session, app, values, source, now):
        return "updated"
    return "updated" if person_changed else "unchanged"


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
