"""FAQ editing: drafts, validation in staff's words, publishing with versions, revert
and readable differences between versions.

Publishing writes ``faq_entries`` (marked edited_by_admin, so ``huimin init`` keeps it),
stores a numbered version, and adds a ``content_revisions`` row: every bot process
then reloads within about three seconds. Drafts live in ``faq_drafts``; the bot never
reads them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.audit import Actor, record
from admin.labels import FAQ_FIELD_LABELS
from admin.models import FaqDraft, FaqVersion
from content.models import ContentRevision, FaqEntryRow
from content.placeholders import PLACEHOLDERS, placeholder
from content.queries import load_published
from content.schema import (
    ANSWER_MAX_CHARS,
    DETAILS_MAX_CHARS,
    ID_PATTERN,
    MIN_ALTERNATIVES,
    REQUIRED,
    FaqEntry,
    Problem,
    check,
    entry_from_data,
    placeholder_problems,
)
from huimin.clock import local_today, utcnow

FIELDS = ("id", "file", "category", "question", "alternatives", "keywords", "answer",
          "details", "source", "reviewed")
LIST_FIELDS = ("alternatives", "keywords")
FAQ_FILE_PREFIX = "content/faq/"
ALLOWED_IN_WORDS = ("答案和详细说明里只能用这几个占位符（照原样写，会换成县里的信息）："
                    + "、".join(f"{placeholder(name)}（{what}）"
                               for name, what in PLACEHOLDERS.items())
                    + "；别的带 {{、{%、{# 的写法都不能用。")
_KEYWORD_SPLIT = re.compile(r"[\n,，、;；]+")
_FILE_NAME = re.compile(r"^[a-z0-9_]+\.yaml$")
BASELINE_NOTE = "启用管理界面之前的内容"
SYSTEM = "系统"


# ----- data shapes ----------------------------------------------------------------
def entry_data(entry: FaqEntry, file: str) -> dict[str, Any]:
    """An entry as stored in versions and drafts: plain JSON, 'reviewed' as text."""
    data = entry.to_data()
    data["reviewed"] = entry.reviewed.isoformat()
    data.setdefault("details", None)
    data["file"] = file
    return {key: data.get(key) for key in FIELDS}


def row_data(row: FaqEntryRow) -> dict[str, Any]:
    return {
        "id": row.id, "file": row.file, "category": row.category, "question": row.question,
        "alternatives": list(row.alternatives), "keywords": list(row.keywords),
        "answer": row.answer, "details": row.details, "source": row.source,
        "reviewed": row.reviewed.isoformat(),
    }


def split_lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]


def split_keywords(text: str) -> list[str]:
    return [word.strip() for word in _KEYWORD_SPLIT.split(text) if word.strip()]


def data_from_form(form: Mapping[str, str], entry_id: str, file: str) -> dict[str, Any]:
    """The edit form as draft data (kept even when not yet valid)."""
    details = (form.get("details") or "").replace("\r", "").strip()
    return {
        "id": entry_id,
        "file": file,
        "category": (form.get("category") or "").strip(),
        "question": (form.get("question") or "").strip(),
        "alternatives": split_lines(form.get("alternatives") or ""),
        "keywords": split_keywords(form.get("keywords") or ""),
        "answer": (form.get("answer") or "").replace("\r", "").strip(),
        "details": details or None,
        "source": (form.get("source") or "").strip(),
        "reviewed": (form.get("reviewed") or "").strip(),
    }


def entry_from(data: Mapping[str, Any]) -> tuple[FaqEntry | None, list[Problem]]:
    """Build the entry from draft or version data (schema rules for each field)."""
    fields = {key: data.get(key) for key in (*REQUIRED, "details")}
    if not fields.get("details"):
        fields.pop("details")
    return entry_from_data(fields, str(data.get("file") or ""))


def file_for_new(name: str) -> str:
    """'dibao.yaml' or 'content/faq/dibao.yaml' -> 'content/faq/dibao.yaml'."""
    base = name.strip().rsplit("/", 1)[-1]
    if not _FILE_NAME.match(base):
        raise ValueError(base)
    return FAQ_FILE_PREFIX + base


# ----- problems in staff's words ----------------------------------------------------
@dataclass(frozen=True)
class FieldError:
    """A problem shown beside one field of the form (field None: above the form)."""

    field: str | None
    message: str
    entry: str | None = None


def _label(problem: Problem) -> str:
    return FAQ_FIELD_LABELS.get(problem.field or "", problem.field or "")


# How each content.schema problem code is said on the form: (field shown beside, text).
WORDING: dict[str, Callable[[Problem], tuple[str | None, str]]] = {
    "missing_field": lambda p: (p.field, f"{_label(p)}不能空着"),
    "unknown_field": lambda p: (None, f"不认识的栏目“{p.field}”"),
    "bad_id": lambda p: ("id", "编号只能用小写英文字母和数字，几段之间用“-”连接，例如 dibao-apply"),
    "not_a_list": lambda p: (p.field, f"{_label(p)}要一行写一个"),
    "bad_date": lambda p: ("reviewed", "审核日期要写成 2026-11-28 这样"),
    "id_used": lambda p: ("id", f"这个编号已经用过了（在 {p.params['other_file']}）"),
    "too_few_alternatives": lambda p: (
        "alternatives", f"其他问法至少要{p.params['least']}种，现在只有{p.params['has']}种"),
    "empty_phrasing": lambda p: ("alternatives", "有一种问法去掉标点后是空的"),
    "phrasing_shared": lambda p: (
        p.field, f"问法“{p.params['phrasing']}”已经用在条目 {p.params['owner']} 里了，"
                 "一种问法只能属于一条"),
    "phrasing_repeated": lambda p: (
        p.field, f"问法“{p.params['phrasing']}”写重复了（不算标点和空格）"),
    "placeholder_refused": lambda p: (
        p.field, f"{_label(p)}里的“{p.params['shown']}”不能用。{ALLOWED_IN_WORDS}"),
    "placeholder_missing": lambda p: (
        p.field, f"{_label(p)}里的 {placeholder(p.params['name'])} 填不出来：县里的设置文件"
                 f"（county.yaml）没有“{p.params['name']}”这一项，请告诉管理员"),
    "too_long": lambda p: (
        p.field, f"{_label(p)}显示出来有{p.params['length']}个字，最多{p.params['limit']}个字"),
    "catalogue_missing": lambda p: (None, "目录里的这一条不见了"),
    "replacement_unchanged": lambda p: (None, "替换后的词不能和原来的词一样"),
    "entry_not_mapping": lambda p: (
        None, "每个条目都要写成“栏目: 内容”的样子（可以照导出的文件写）"),
    "dictionary_not_mapping": lambda p: (
        None, "词典文件要有 replacements（替换词）和 fillers（语气词）两部分"),
    "replacements_not_words": lambda p: (None, "replacements 里每一行要写成“原来的词: 换成的词”"),
    "fillers_not_words": lambda p: (None, "fillers 要一行一个语气词"),
}


def explain(problem: Problem) -> FieldError:
    """A content.schema problem in plain Chinese, placed on the field it is about."""
    wording = WORDING.get(problem.code)
    if wording is None:
        return FieldError(None, problem.message, problem.entry)
    where, text = wording(problem)
    return FieldError(where, text, problem.entry)


# ----- validation and publishing ------------------------------------------------------
@dataclass
class Outcome:
    """The result of a publish (or a validation): the errors, or the new version."""

    errors: list[FieldError] = field(default_factory=list)
    version: int | None = None
    entry: FaqEntry | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_field(self) -> dict[str | None, list[str]]:
        grouped: dict[str | None, list[str]] = {}
        for error in self.errors:
            grouped.setdefault(error.field, []).append(error.message)
        return grouped


def placeholder_errors(data: Mapping[str, Any], county: Mapping[str, Any]) -> list[FieldError]:
    """Answer and details may hold only the allowed placeholders: checked when a draft is
    saved (a refused draft is not stored) and again, through ``check``, when published."""
    errors = []
    for key in ("answer", "details"):
        for problem in placeholder_problems(key, str(data.get(key) or ""), county):
            errors.append(explain(problem))
    return errors


def _field_checks(data: Mapping[str, Any]) -> list[FieldError]:
    """What entry_from_data cannot say well: lengths of the plain fields."""
    errors = []
    for key, limit in (("category", 32), ("source", 64), ("question", 200)):
        if len(str(data.get(key) or "")) > limit:
            errors.append(FieldError(key, f"{FAQ_FIELD_LABELS[key]}最多{limit}个字"))
    return errors


async def validate(session: AsyncSession, data: Mapping[str, Any], county: Mapping[str, Any],
                   is_new: bool) -> Outcome:
    """Check one entry as it would sit among every other published entry.

    The entry goes last, so a phrasing it shares with another entry is reported on it.
    Problems of other entries that exist already (not caused by this one) are ignored.
    """
    entry, problems = entry_from(data)
    errors = _field_checks(data)
    if entry is None:
        return Outcome(errors + [explain(p) for p in problems])
    published = await load_published(session)
    exists = any(e.id == entry.id for _, e in published.entries)
    if is_new and exists:
        errors.append(FieldError("id", "这个编号已经有条目在用了，请换一个"))
    if not is_new and not exists:
        errors.append(FieldError(None, "这条问答在已发布的内容里找不到了"))
    others = [(f, e) for f, e in published.entries if e.id != entry.id]
    baseline = {(p.entry, p.message) for p in check(published.entries, county)}
    found = check([*others, (str(data.get("file") or ""), entry)], county)
    errors += [explain(p) for p in found
               if p.entry == entry.id or (p.entry, p.message) not in baseline]
    return Outcome(errors, entry=entry)


async def latest_version(session: AsyncSession, entry_id: str) -> int:
    """The newest version number of an entry (0: never published through the admin UI)."""
    return await session.scalar(select(func.max(FaqVersion.version))
                                .where(FaqVersion.entry_id == entry_id)) or 0


async def publish(session: AsyncSession, data: Mapping[str, Any], county: Mapping[str, Any],
                  actor: Actor, *, is_new: bool = False, note: str = "",
                  action: str = "faq_publish") -> Outcome:
    """Validate and publish one entry in the caller's transaction (nothing on errors)."""
    outcome = await validate(session, data, county, is_new)
    if not outcome.ok or outcome.entry is None:
        return outcome
    outcome.version = await write(session, outcome.entry, str(data.get("file") or ""), actor,
                                  note=note, action=action)
    return outcome


async def write(session: AsyncSession, entry: FaqEntry, file: str, actor: Actor, *,
                note: str, action: str, bump: bool = True) -> int:
    """Store an already validated entry as published, with a new version; returns it."""
    row = await session.get(FaqEntryRow, entry.id)
    before = row_data(row) if row is not None else None
    latest = await latest_version(session, entry.id)
    now = utcnow()
    if latest == 0 and before is not None:
        # Keep what was there before the first edit, so it can be restored.
        session.add(FaqVersion(entry_id=entry.id, version=1, data=before, note=BASELINE_NOTE,
                               published_by=SYSTEM, published_at=now))
        latest = 1
    values = {"file": file, "category": entry.category, "question": entry.question,
              "alternatives": list(entry.alternatives), "keywords": list(entry.keywords),
              "answer": entry.answer, "details": entry.details, "source": entry.source,
              "reviewed": entry.reviewed, "edited_by_admin": True, "updated_at": now}
    if row is None:
        session.add(FaqEntryRow(id=entry.id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    version = latest + 1
    after = entry_data(entry, file)
    session.add(FaqVersion(entry_id=entry.id, version=version, data=after,
                           note=note[:200], published_by=actor.username or SYSTEM,
                           published_at=now))
    if bump:
        session.add(ContentRevision(
            note=f"admin: {entry.id} v{version} by {actor.username}"[:200]))
    record(session, actor, action, "faq", entry.id, before=before,
           after={**after, "version": version, "note": note})
    await session.flush()
    return version


async def revert(session: AsyncSession, entry_id: str, version: int,
                 county: Mapping[str, Any], actor: Actor) -> Outcome:
    """Publish an old version again, as a new version."""
    row = await session.scalar(select(FaqVersion).where(
        FaqVersion.entry_id == entry_id, FaqVersion.version == version))
    if row is None:
        return Outcome([FieldError(None, f"没有第{version}版")])
    return await publish(session, row.data, county, actor, note=f"恢复到第{version}版",
                         action="faq_revert")


async def versions(session: AsyncSession, entry_id: str) -> list[FaqVersion]:
    rows = await session.scalars(select(FaqVersion).where(FaqVersion.entry_id == entry_id)
                                 .order_by(FaqVersion.version.desc()))
    return list(rows.all())


# ----- drafts ----------------------------------------------------------------------
async def get_draft(session: AsyncSession, entry_id: str) -> FaqDraft | None:
    return await session.get(FaqDraft, entry_id)


async def save_draft(session: AsyncSession, data: dict[str, Any], actor: Actor, *,
                     is_new: bool, inbox_ids: list[int] | None = None) -> FaqDraft:
    entry_id = str(data["id"])
    draft = await session.get(FaqDraft, entry_id)
    before = dict(draft.data) if draft is not None else None
    if draft is None:
        draft = FaqDraft(entry_id=entry_id, is_new=is_new, data=data,
                         base_version=await latest_version(session, entry_id),
                         inbox_ids=list(inbox_ids or []), updated_by=actor.username or "",
                         updated_at=utcnow())
        session.add(draft)
    else:
        draft.data = data
        draft.updated_by = actor.username or ""
        draft.updated_at = utcnow()
        if inbox_ids:
            draft.inbox_ids = sorted(set(draft.inbox_ids or []) | set(inbox_ids))
    record(session, actor, "faq_draft", "faq", entry_id, before=before, after=data)
    await session.flush()
    return draft


async def discard_draft(session: AsyncSession, entry_id: str, actor: Actor) -> bool:
    draft = await session.get(FaqDraft, entry_id)
    if draft is None:
        return False
    record(session, actor, "faq_draft_discard", "faq", entry_id, before=draft.data)
    await session.delete(draft)
    return True


async def drop_draft(session: AsyncSession, entry_id: str) -> None:
    await session.execute(delete(FaqDraft).where(FaqDraft.entry_id == entry_id))


# ----- differences -------------------------------------------------------------------
@dataclass(frozen=True)
class FieldDiff:
    """One changed field: lines marked 'same', 'del' (removed) or 'add' (added)."""

    field: str
    label: str
    lines: list[tuple[str, str]]


def _as_lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value).split("\n")


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[FieldDiff]:
    """The fields that differ between two versions (difflib, line by line)."""
    changes = []
    for key in FIELDS:
        before, after = _as_lines((old or {}).get(key)), _as_lines(new.get(key))
        if before == after:
            continue
        lines: list[tuple[str, str]] = []
        matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
        for op, a1, a2, b1, b2 in matcher.get_opcodes():
            if op == "equal":
                lines += [("same", line) for line in before[a1:a2]]
                continue
            lines += [("del", line) for line in before[a1:a2]]
            lines += [("add", line) for line in after[b1:b2]]
        changes.append(FieldDiff(key, FAQ_FIELD_LABELS[key], lines))
    return changes


def valid_new_id(entry_id: str) -> str | None:
    """The reason a new id cannot be used, or None."""
    if not entry_id:
        return "编号不能空着"
    if len(entry_id) > 64 or not ID_PATTERN.match(entry_id):
        return "编号只能用小写英文字母和数字，几段之间用“-”连接，例如 dibao-apply"
    return None


def today() -> str:
    """Today's date in China, as the review date of an edit."""
    return local_today().isoformat()


LIMITS = {"answer": ANSWER_MAX_CHARS, "details": DETAILS_MAX_CHARS,
          "alternatives": MIN_ALTERNATIVES}
