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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.audit import LOCAL_TZ, Actor, record
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
from huimin.db import utcnow

FIELDS = ("id", "file", "category", "question", "alternatives", "keywords", "answer",
          "details", "source", "reviewed")
LIST_FIELDS = ("alternatives", "keywords")
LABELS: dict[str, str] = {
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


_MESSAGES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^missing field '(\w+)'$"),
     lambda m: (m[1], f"{LABELS.get(m[1], m[1])}不能空着")),
    (re.compile(r"^unknown field '(.+)'$"), lambda m: (None, f"不认识的栏目“{m[1]}”")),
    (re.compile(r"^id must be lower-case"),
     lambda m: ("id", "编号只能用小写英文字母和数字，几段之间用“-”连接，例如 dibao-apply")),
    (re.compile(r"^'(alternatives|keywords)' must be a list of texts$"),
     lambda m: (m[1], f"{LABELS[m[1]]}要一行写一个")),
    (re.compile(r"^'reviewed' must be a date"),
     lambda m: ("reviewed", "审核日期要写成 2026-11-28 这样")),
    (re.compile(r"^id already used in (.+)$"),
     lambda m: ("id", f"这个编号已经用过了（在 {m[1]}）")),
    (re.compile(r"^needs at least (\d+) alternative phrasings, has (\d+)$"),
     lambda m: ("alternatives", f"其他问法至少要{m[1]}种，现在只有{m[2]}种")),
    (re.compile(r"^empty phrasing (.*)$"),
     lambda m: ("alternatives", "有一种问法去掉标点后是空的")),
    (re.compile(r"^phrasing (['\"])(.*)\1 is also used by (.+)$"),
     lambda m: ("phrasing", f"问法“{m[2]}”已经用在条目 {m[3]} 里了，一种问法只能属于一条")),
    (re.compile(r"^phrasing (['\"])(.*)\1 repeated$"),
     lambda m: ("phrasing", f"问法“{m[2]}”写重复了（不算标点和空格）")),
    (re.compile(r"^(answer|details) has a placeholder that is not allowed: (.*); allowed are ",
                re.S),
     lambda m: (m[1], f"{LABELS[m[1]]}里的“{m[2]}”不能用。{ALLOWED_IN_WORDS}")),
    (re.compile(r"^(answer|details) uses county\.(\w+) but the county file has no value"),
     lambda m: (m[1], f"{LABELS[m[1]]}里的 {placeholder(m[2])} 填不出来：县里的设置文件"
                      f"（county.yaml）没有“{m[2]}”这一项，请告诉管理员")),
    (re.compile(r"^(answer|details) is (\d+) characters, the limit is (\d+)$"),
     lambda m: (m[1], f"{LABELS[m[1]]}显示出来有{m[2]}个字，最多{m[3]}个字")),
    (re.compile(r"^catalogue entry is missing$"), lambda m: (None, "目录里的这一条不见了")),
    (re.compile(r"^a replacement must change the word$"),
     lambda m: (None, "替换后的词不能和原来的词一样")),
    (re.compile(r"^each entry must be a mapping of fields$"),
     lambda m: (None, "每个条目都要写成“栏目: 内容”的样子（可以照导出的文件写）")),
    (re.compile(r"^must be a mapping with 'replacements' and 'fillers'$"),
     lambda m: (None, "词典文件要有 replacements（替换词）和 fillers（语气词）两部分")),
    (re.compile(r"^must map words to words$"),
     lambda m: (None, "replacements 里每一行要写成“原来的词: 换成的词”")),
    (re.compile(r"^must be a list of words$"),
     lambda m: (None, "fillers 要一行一个语气词")),
]


def explain(problem: Problem, question: str = "") -> FieldError:
    """A content.schema problem in plain Chinese, placed on the field it is about."""
    for pattern, make in _MESSAGES:
        found = pattern.match(problem.message)
        if found:
            where, text = make(found)
            if where == "phrasing":
                where = "question" if found[2].strip() == question.strip() else "alternatives"
            return FieldError(where, text, problem.entry)
    return FieldError(None, problem.message, problem.entry)


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
        for message in placeholder_problems(key, str(data.get(key) or ""), county):
            errors.append(explain(Problem("", None, message)))
    return errors


def _field_checks(data: Mapping[str, Any]) -> list[FieldError]:
    """What entry_from_data cannot say well: lengths of the plain fields."""
    errors = []
    for key, limit in (("category", 32), ("source", 64), ("question", 200)):
        if len(str(data.get(key) or "")) > limit:
            errors.append(FieldError(key, f"{LABELS[key]}最多{limit}个字"))
    return errors


async def validate(session: AsyncSession, data: Mapping[str, Any], county: Mapping[str, Any],
                   is_new: bool) -> Outcome:
    """Check one entry as it would sit among every other published entry.

    The entry goes last, so a phrasing it shares with another entry is reported on it.
    Problems of other entries that exist already (not caused by this one) are ignored.
    """
    entry, problems = entry_from(data)
    errors = _field_checks(data)
    question = str(data.get("question") or "")
    if entry is None:
        return Outcome(errors + [explain(p, question) for p in problems])
    published = await load_published(session)
    exists = any(e.id == entry.id for _, e in published.entries)
    if is_new and exists:
        errors.append(FieldError("id", "这个编号已经有条目在用了，请换一个"))
    if not is_new and not exists:
        errors.append(FieldError(None, "这条问答在已发布的内容里找不到了"))
    others = [(f, e) for f, e in published.entries if e.id != entry.id]
    baseline = {(p.entry, p.message) for p in check(published.entries, county)}
    found = check([*others, (str(data.get("file") or ""), entry)], county)
    errors += [explain(p, question) for p in found
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
        changes.append(FieldDiff(key, LABELS[key], lines))
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
    return datetime.now(LOCAL_TZ).date().isoformat()


LIMITS = {"answer": ANSWER_MAX_CHARS, "details": DETAILS_MAX_CHARS,
          "alternatives": MIN_ALTERNATIVES}
