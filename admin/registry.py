"""The registry as staff see it: checking an application list before it is imported,
listing and searching applications, changing a stage, WeChat bindings and delegates,
and the reminders sent to one person.

Only masked ID and phone numbers ever leave this module; the clear values are read
from the uploaded file to check it and compare it with the registry, and dropped.
Every change a member of staff makes is written to the registry's own access_log
(actor "staff:<username>") as well as to the admin audit log (by the views).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.lists import PREVIEW_ROWS, ListPreview, check_file, chunks, people_by_id_number
from huimin.clock import utcnow
from huimin.personal import (
    PersonalDataError,
    Vault,
    mask_id,
    mask_name,
    mask_phone,
    mask_text,
    normalise_id,
    normalise_phone,
)
from huimin.registry import ALL_STAGES, PROGRAMMES, grants
from huimin.registry.importer import ImportFileError, checked_rows
from huimin.registry.models import Application, Beneficiary, Binding, GrantCode, StatusChange
from huimin.registry.queries import ApplicationRecord, bind, import_conflict, log_access
from notify.models import OutboxMessage

PER_PAGE = 50
MESSAGES_SHOWN = 100
_OPENID = re.compile(r"[A-Za-z0-9_-]{6,64}")

FIELD_LABELS = {
    "programme": "项目", "stage": "环节", "stage_date": "环节日期", "township": "乡镇",
    "next_step": "下一步", "recheck_due": "复核日期", "monthly_amount": "月补助金额",
    "beneficiary": "申请人", "name": "姓名", "phone": "手机号",
}


def staff(username: str) -> str:
    """How a member of staff is named in the registry's tables (access_log, bindings)."""
    return f"staff:{username}"


def mask_openid(openid: str) -> str:
    """o****abcd: enough to tell two WeChat accounts apart, not to use one."""
    if len(openid) <= 6:
        return "*" * len(openid)
    return openid[0] + "****" + openid[-4:]


def _shown_value(key: str, value: Any) -> str:
    if value is None or value == "":
        return "（空）"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return str(value)


# ----- checking an application list ---------------------------------------------------
@dataclass
class PreviewRow:
    line: int
    number: str
    masked_name: str
    masked_id: str
    masked_phone: str
    township: str
    programme: str
    stage: str
    stage_date: date
    status: str  # "new", "changed", "same", "conflict"
    changes: list[str] = field(default_factory=list)
    conflict: str = ""  # why importing this row needs confirming ("环节会从…退回…")
    stored_stage: str = ""  # the application's stage now (what a confirmation is for)

    @property
    def confirm_value(self) -> str:
        """The value of the row's 确认 checkbox: the stage it was shown at, and its
        number (``parse_confirmed``)."""
        return f"{self.stored_stage}:{self.number}"


@dataclass
class Preview(ListPreview[PreviewRow]):
    """An application list, checked and compared with the registry. Rows that would
    move a stage backwards or overwrite a change made in the UI are "conflict" rows:
    they are imported only when staff tick them."""

    def __post_init__(self) -> None:
        self.counts.setdefault("conflict", 0)

    @property
    def ok(self) -> bool:
        return self.file_error is None and (self.counts["new"] + self.counts["changed"]
                                            + self.counts["conflict"]) > 0

    @property
    def conflicts(self) -> list[PreviewRow]:
        return [row for row in self.rows if row.status == "conflict"]

    @property
    def listed(self) -> list[PreviewRow]:
        """Rows to list (after the conflicts, which are always all listed)."""
        return [row for row in self.rows if row.status != "conflict"][:PREVIEW_ROWS]

    @property
    def unlisted(self) -> int:
        return self.counts["new"] + self.counts["changed"] - len(self.listed)


def parse_confirmed(values: list[str]) -> dict[str, str]:
    """The ticked conflict rows of a preview: {application number: the stage it was at
    when shown}. Anything malformed is left out (that row stays held back)."""
    confirmed: dict[str, str] = {}
    for value in values[:MAX_CONFIRMED]:
        stage, _, number = value.partition(":")
        if stage in ALL_STAGES and 0 < len(number) <= 40:
            confirmed[number] = stage
    return confirmed


MAX_CONFIRMED = 200_000  # a list's rows at most


async def preview_applications(session: AsyncSession, vault: Vault, path: Path,
                               filename: str) -> Preview:
    """Check an application list and compare it with the registry; saves nothing."""
    preview = Preview(filename=filename)
    try:
        checked = await check_file(checked_rows, path)
    except ImportFileError as exc:
        preview.file_error = str(exc)
        return preview
    good = checked.good
    preview.errors, preview.more_errors = sorted(checked.errors), checked.more_errors
    people = await people_by_id_number(session, vault, (r.id_number for _, r in good))
    apps: dict[str, Application] = {}
    for chunk in chunks(sorted({record.number for _, record in good})):
        for app in (await session.scalars(
                select(Application).where(Application.number.in_(chunk)))).all():
            apps[app.number] = app
    for line, record in good:
        person = people.get(record.id_number)
        app = apps.get(record.number)
        changes = _changes(vault, record, person, app)
        conflict = import_conflict(app, record) if app is not None and changes else None
        status = ("new" if app is None else "conflict" if conflict
                  else "changed" if changes else "same")
        preview.counts[status] += 1
        if status == "same":
            continue
        preview.rows.append(PreviewRow(
            line=line, number=record.number, masked_name=mask_name(record.name),
            masked_id=mask_id(record.id_number),
            masked_phone=mask_phone(record.phone) if record.phone else "",
            township=record.township, programme=record.programme, stage=record.stage,
            stage_date=record.stage_date, status=status, changes=changes,
            conflict=conflict or "", stored_stage=app.stage if app is not None else ""))
    return preview


def _changes(vault: Vault, record: ApplicationRecord, person: Beneficiary | None,
             app: Application | None) -> list[str]:
    """What importing ``record`` would change, in words ("环节：审核 → 公示")."""
    changes: list[str] = []
    if person is not None:
        if person.name != record.name:
            changes.append(f"姓名：{mask_name(person.name)} → {mask_name(record.name)}")
        if person.township != record.township:
            changes.append(f"乡镇（本人）：{person.township} → {record.township}")
        if record.phone and person.phone_hash not in vault.lookup_hashes(record.phone):
            changes.append(f"手机号：{person.phone_masked or '（空）'} → "
                           f"{mask_phone(record.phone)}")
    if app is None:
        return changes
    if person is None or app.beneficiary_id != person.id:
        changes.append("申请人换成了另一个身份证号")
    for key in ("programme", "stage", "stage_date", "township", "next_step", "recheck_due",
                "monthly_amount"):
        old, new = getattr(app, key), getattr(record, key)
        if key == "monthly_amount":
            differs = (Decimal(old) if old is not None else None) != new
        else:
            differs = old != new
        if differs:
            changes.append(f"{FIELD_LABELS[key]}：{_shown_value(key, old)} → "
                           f"{_shown_value(key, new)}")
    return changes


# ----- the list -------------------------------------------------------------------------
# What a search box entry is: a full ID number or mobile number is looked up through its
# keyed hash (the only way the registry holds them); anything else is matched against
# the name, the application number and the township.
BY_ID, BY_PHONE, BY_TEXT = "id", "phone", "text"
SEARCH_WORDS = {BY_ID: "身份证号", BY_PHONE: "手机号", BY_TEXT: "姓名、申请编号或乡镇"}
_ID_LIKE = re.compile(r"\d{17}[\dXx]|\d{15}")
_PHONE_LIKE = re.compile(r"(?:\+86)?1\d{10}")
_CJK_NAME = re.compile(r"[\u3400-\u9fff·]{1,8}")
_LONG_DIGITS = re.compile(r"\d{7,}")


@dataclass(frozen=True)
class ListFilter:
    q: str = ""
    programme: str = ""
    stage: str = ""

    @classmethod
    def from_query(cls, query: Any) -> ListFilter:
        q = unicodedata.normalize("NFKC", str(query.get("q", ""))).strip()[:40]
        programme = str(query.get("programme", ""))
        stage = str(query.get("stage", ""))
        return cls(q=q, programme=programme if programme in PROGRAMMES else "",
                   stage=stage if stage in ALL_STAGES else "")

    @property
    def compact(self) -> str:
        return re.sub(r"[\s\-－]", "", self.q)

    @property
    def kind(self) -> str:
        """BY_ID, BY_PHONE or BY_TEXT."""
        if _ID_LIKE.fullmatch(self.compact):
            return BY_ID
        if _PHONE_LIKE.fullmatch(self.compact):
            return BY_PHONE
        return BY_TEXT

    @property
    def problem(self) -> str:
        """Why a typed ID or phone number cannot be anyone's (plain Chinese), or ""."""
        try:
            if self.kind == BY_ID:
                normalise_id(self.compact)
            elif self.kind == BY_PHONE:
                normalise_phone(self.compact)
        except PersonalDataError as exc:
            return str(exc)
        return ""

    @property
    def masked_q(self) -> str:
        """The search as it may be shown and audited: never a number in clear."""
        if self.kind == BY_ID:
            return mask_id(self.compact.upper()) if len(self.compact) == 18 else "*" * 15
        if self.kind == BY_PHONE:
            return mask_phone(self.compact[-11:])
        if _CJK_NAME.fullmatch(self.q):
            return mask_name(self.q)
        return _LONG_DIGITS.sub(lambda m: "*" * len(m.group(0)), mask_text(self.q))

    def as_query(self) -> dict[str, str]:
        """For links to other pages of the same search: an ID or phone number never goes
        into a link (its search finds one person's applications, one page)."""
        return {"q": self.q if self.kind == BY_TEXT else "", "programme": self.programme,
                "stage": self.stage}


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class ListRow:
    application: Application
    person: Beneficiary

    @property
    def masked_name(self) -> str:
        return mask_name(self.person.name)


async def search_applications(session: AsyncSession, filters: ListFilter, page: int,
                              per_page: int = PER_PAGE, vault: Vault | None = None
                              ) -> tuple[list[ListRow], int]:
    """One page of applications (newest stage date first) and how many match. A full ID
    or phone number is found through its keyed hashes (``vault`` needed); other text
    matches the name, the application number or the township."""
    query = select(Application, Beneficiary).join(
        Beneficiary, Beneficiary.id == Application.beneficiary_id)
    if filters.q:
        kind = filters.kind
        if kind != BY_TEXT and (filters.problem or vault is None):
            return [], 0
        if kind == BY_ID:
            assert vault is not None
            query = query.where(Beneficiary.id_hash.in_(
                vault.lookup_hashes(normalise_id(filters.compact))))
        elif kind == BY_PHONE:
            assert vault is not None
            query = query.where(Beneficiary.phone_hash.in_(
                vault.lookup_hashes(normalise_phone(filters.compact))))
        else:
            pattern = _like(filters.q)
            query = query.where(or_(Application.number.ilike(pattern, escape="\\"),
                                    Application.township.ilike(pattern, escape="\\"),
                                    Beneficiary.name.like(pattern, escape="\\")))
    if filters.programme:
        query = query.where(Application.programme == filters.programme)
    if filters.stage:
        query = query.where(Application.stage == filters.stage)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = (await session.execute(
        query.order_by(Application.stage_date.desc(), Application.id.desc())
        .offset((page - 1) * per_page).limit(per_page))).all()
    return [ListRow(app, person) for app, person in rows], total


# ----- one application -------------------------------------------------------------------
@dataclass
class ApplicationPage:
    application: Application
    person: Beneficiary
    history: list[StatusChange]
    others: list[Application]  # the person's other applications
    bindings: list[Binding]  # active first, then revoked (newest first)
    messages: list[OutboxMessage]

    @property
    def active_bindings(self) -> list[Binding]:
        return [b for b in self.bindings if b.revoked_at is None]

    @property
    def past_bindings(self) -> list[Binding]:
        return [b for b in self.bindings if b.revoked_at is not None]


async def application_page(session: AsyncSession, application_id: int
                           ) -> ApplicationPage | None:
    app = await session.get(Application, application_id)
    if app is None:
        return None
    person = await session.get(Beneficiary, app.beneficiary_id)
    assert person is not None
    history = (await session.scalars(
        select(StatusChange).where(StatusChange.application_id == app.id)
        .order_by(StatusChange.recorded_at.desc(), StatusChange.id.desc()))).all()
    others = (await session.scalars(
        select(Application).where(and_(Application.beneficiary_id == person.id,
                                       Application.id != app.id))
        .order_by(Application.stage_date.desc()))).all()
    bindings = (await session.scalars(
        select(Binding).where(Binding.beneficiary_id == person.id)
        .order_by(Binding.revoked_at.is_not(None), Binding.created_at.desc(),
                  Binding.id.desc()))).all()
    messages = (await session.scalars(
        select(OutboxMessage).where(OutboxMessage.beneficiary_id == person.id)
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(MESSAGES_SHOWN))).all()
    return ApplicationPage(app, person, list(history), list(others), list(bindings),
                           list(messages))


def application_state(app: Application) -> dict[str, Any]:
    """What the stage form changes, for the audit log's before/after."""
    return {"number": app.number, "stage": app.stage, "stage_date": app.stage_date,
            "next_step": app.next_step, "recheck_due": app.recheck_due}


@dataclass(frozen=True)
class StageForm:
    stage: str
    stage_date: date
    next_step: str
    recheck_due: date | None


def parse_stage_form(form: Any, today: date) -> tuple[StageForm | None, list[str]]:
    """The stage form's values, or the problems with them (plain Chinese)."""
    problems: list[str] = []
    stage = str(form.get("stage", "")).strip()
    if stage not in ALL_STAGES:
        problems.append("请选择环节。")
    stage_date = _form_date(str(form.get("stage_date", "")), "环节日期", problems,
                            required=True)
    if stage_date is not None and stage_date > today:
        problems.append("环节日期不能晚于今天。")
    next_step = re.sub(r"\s+", " ", str(form.get("next_step", ""))).strip()
    if len(next_step) > 200:
        problems.append("下一步说明最多200个字。")
    recheck_due = _form_date(str(form.get("recheck_due", "")), "复核日期", problems,
                             required=False)
    if problems or stage_date is None:
        return None, problems
    return StageForm(stage, stage_date, next_step, recheck_due), []


def _form_date(raw: str, label: str, problems: list[str], *, required: bool) -> date | None:
    raw = raw.strip()
    if not raw:
        if required:
            problems.append(f"请填写{label}。")
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        problems.append(f"{label}看不懂，请写成 2026-11-28 这样。")
        return None
    if not 1990 <= value.year <= 2100:
        problems.append(f"{label}不对。")
        return None
    return value


async def change_stage(session: AsyncSession, app: Application, values: StageForm,
                       username: str) -> StatusChange | None:
    """Save the form; a new stage is recorded as a status change (source "staff:<user>"),
    which the notifier announces like one from an import. Returns it, or None when the
    stage stayed the same (date, note or recheck date changed only)."""
    change = None
    if values.stage != app.stage:
        change = StatusChange(application_id=app.id, from_stage=app.stage,
                              to_stage=values.stage, stage_date=values.stage_date,
                              source=staff(username)[:40], recorded_at=utcnow())
        session.add(change)
    if (app.stage, app.stage_date, app.next_step, app.recheck_due) != (
            values.stage, values.stage_date, values.next_step, values.recheck_due):
        # An import will not overwrite this without staff confirming it (import_conflict).
        app.changed_by = staff(username)[:40]
    app.stage = values.stage
    app.stage_date = values.stage_date
    app.next_step = values.next_step
    app.recheck_due = values.recheck_due
    app.updated_at = utcnow()
    await log_access(session, staff(username), app.beneficiary_id, "stage_changed",
                     application=app.number, stage=values.stage,
                     stage_date=values.stage_date.isoformat())
    await session.flush()
    return change


# ----- bindings -----------------------------------------------------------------------
def binding_view(binding: Binding) -> dict[str, Any]:
    """A binding for the audit log: the openid masked."""
    return {"id": binding.id, "openid": mask_openid(binding.openid), "role": binding.role,
            "granted_by": binding.granted_by,
            "revoked_at": binding.revoked_at, "revoked_by": binding.revoked_by}


class BindingError(ValueError):
    """Why a binding cannot be made or revoked (plain Chinese)."""


def check_openid(raw: str) -> str:
    openid = raw.strip()
    if not _OPENID.fullmatch(openid):
        raise BindingError("微信号（openid）不对：应为6到64个英文字母、数字、“-”或“_”，"
                           "一般是28个字符。")
    return openid


async def grant_delegate(session: AsyncSession, person: Beneficiary, openid: str,
                         username: str, by_code: int | None = None
                         ) -> tuple[Binding, list[Binding]]:
    """Let ``openid`` (a family member or village assistant) see ``person``'s status and
    get the reminders, replacing any earlier delegate. Returns the new binding and the
    bindings it replaced. Refuses an openid bound to someone else, or the person's own."""
    current = await session.scalar(select(Binding).where(and_(
        Binding.openid == openid, Binding.revoked_at.is_(None))))
    if current is not None and current.beneficiary_id != person.id:
        raise BindingError("这个微信号已经绑定了另一位救助对象。请先在那位救助对象的页面"
                           "撤销，或者请本人在公众号里发“解除绑定”。")
    if current is not None and current.role == "self":
        raise BindingError("这个微信号是本人自己绑定的，不需要再授权。")
    if current is not None and current.role == "delegate":
        raise BindingError("这个微信号已经是这位救助对象的授权家人了。")
    replaced = list((await session.scalars(select(Binding).where(and_(
        Binding.beneficiary_id == person.id, Binding.role == "delegate",
        Binding.revoked_at.is_(None))))).all())
    replaced_views = [binding_view(b) for b in replaced]
    binding = await bind(session, openid, person.id, "delegate", staff(username))
    await log_access(session, staff(username), person.id, "delegate_granted",
                     openid=mask_openid(openid), binding=binding.id,
                     replaced=[b["id"] for b in replaced_views], grant_code=by_code)
    return binding, replaced


BAD_GRANT_CODE = ("授权码不对，或者已经过期、用过了（授权码24小时内有效，只能用一次）。"
                  "请家人在公众号里重新发“我的授权码”，把新的告诉您。")
TOO_MANY_WRONG = "这一小时里输错的授权码太多了，请过一小时再试，或请管理员帮忙。"


async def grant_by_code(session: AsyncSession, vault: Vault, person: Beneficiary, code: str,
                        username: str) -> tuple[Binding, list[Binding], GrantCode]:
    """Let the WeChat account that asked the bot for ``code`` (我的授权码) see
    ``person``'s status, as ``grant_delegate`` does for a typed openid. The code is used
    up only when the grant is saved (the caller's transaction). Raises BindingError for a
    wrong, used or lapsed code (the caller records it: ``record_wrong_code``)."""
    if await grants.wrong_codes(session, staff(username)) >= grants.WRONG_PER_HOUR:
        raise BindingError(TOO_MANY_WRONG)
    grant = await grants.redeem(session, vault, code, staff(username))
    if grant is None:
        raise WrongGrantCode(BAD_GRANT_CODE)
    binding, replaced = await grant_delegate(session, person, grant.openid, username,
                                             by_code=grant.id)
    grant.beneficiary_id = person.id
    return binding, replaced, grant


class WrongGrantCode(BindingError):
    """No open grant code matches what was typed."""


async def record_wrong_code(session: AsyncSession, person: Beneficiary, username: str) -> None:
    """A wrong grant code typed for ``person`` (counted towards WRONG_PER_HOUR)."""
    await log_access(session, staff(username), person.id, "grant_code_wrong")


async def revoke_binding(session: AsyncSession, person: Beneficiary, binding_id: int,
                         username: str) -> tuple[dict[str, Any], Binding]:
    """Revoke one active binding of ``person``; returns its state before, and it."""
    binding = await session.get(Binding, binding_id)
    if binding is None or binding.beneficiary_id != person.id:
        raise BindingError("没有找到这个绑定。")
    if binding.revoked_at is not None:
        raise BindingError("这个绑定已经撤销过了。")
    before = binding_view(binding)
    binding.revoked_at = utcnow()
    binding.revoked_by = staff(username)
    await log_access(session, staff(username), person.id, "binding_revoked",
                     openid=mask_openid(binding.openid), role=binding.role,
                     binding=binding.id)
    await session.flush()
    return before, binding
