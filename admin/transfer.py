"""Import one FAQ file or the dictionary file (check, preview, publish) and export all
content as a .zip of faq/*.yaml and dictionary.yaml (content.load.export_content)."""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.audit import Actor, record
from admin.dictionary import MAX_TERM
from admin.faq import (
    FAQ_FILE_PREFIX,
    FieldDiff,
    FieldError,
    diff,
    entry_data,
    explain,
    row_data,
    write,
)
from content.load import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    ContentYamlError,
    export_content,
    load_dictionary_data,
    parse_content_yaml,
)
from content.models import ContentRevision, DictionaryRow, FaqEntryRow
from content.queries import load_published
from content.schema import Dictionary, FaqEntry, Problem, check, entry_from_data

MAX_UPLOAD = MAX_FILE_BYTES
MAX_ENTRIES = 500  # per file; the shipped files have a few dozen at most
MAX_ERRORS_SHOWN = 50
_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass
class EntryChange:
    entry_id: str
    status: str  # "new", "changed", "same"
    data: dict[str, Any]
    changes: list[FieldDiff] = field(default_factory=list)


@dataclass
class TermChange:
    kind: str
    term: str
    before: str | None
    after: str | None
    status: str  # "new", "changed", "removed"


@dataclass
class ImportPlan:
    """What an uploaded file would change, and what is wrong with it."""

    kind: str  # "faq", "dictionary" or "" (not recognised)
    file: str
    errors: list[FieldError] = field(default_factory=list)
    entries: list[EntryChange] = field(default_factory=list)
    terms: list[TermChange] = field(default_factory=list)
    dictionary: Dictionary | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.kind)

    @property
    def has_changes(self) -> bool:
        return any(e.status != "same" for e in self.entries) or bool(self.terms)

    def count(self, status: str) -> int:
        return sum(1 for e in [*self.entries, *self.terms] if e.status == status)


def decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _file_name(upload_name: str) -> str | None:
    base = upload_name.replace("\\", "/").rsplit("/", 1)[-1].strip().lower()
    stem, _, ext = base.rpartition(".")
    if ext not in {"yaml", "yml"} or not _NAME.match(stem):
        return None
    return stem + ".yaml"


async def plan_import(session: AsyncSession, upload_name: str, text: str,
                      county: Mapping[str, Any]) -> ImportPlan:
    """Read an uploaded file and work out, without changing anything, what it would do."""
    name = _file_name(upload_name)
    if name is None:
        return ImportPlan("", upload_name, [FieldError(
            None, "文件名要像 dibao.yaml 或 dictionary.yaml：英文小写字母、数字和下划线，"
                  "以 .yaml 结尾")])
    try:
        # a megabyte takes a second or two to parse: off the event loop
        data = await asyncio.to_thread(parse_content_yaml, text)
    except ContentYamlError as exc:
        return ImportPlan("", name, [FieldError(None, yaml_problem(exc))])
    if isinstance(data, list):
        if len(data) > MAX_ENTRIES:
            return ImportPlan("", name, [FieldError(
                None, f"文件里有{len(data)}个条目，一个文件最多{MAX_ENTRIES}个，请分成几个文件")])
        plan = await _plan_faq(session, name, data, county)
    elif isinstance(data, Mapping) and ("replacements" in data or "fillers" in data):
        plan = await _plan_dictionary(session, name, data)
    else:
        return ImportPlan("", name, [FieldError(
            None, "看不出这是问答文件（一串条目）还是词典文件（replacements 和 fillers）")])
    plan.errors = capped(plan.errors)
    return plan


def yaml_problem(exc: ContentYamlError) -> str:
    """Why a content file cannot be read, in staff's words."""
    line = f"第{exc.line}行附近" if exc.line else ""
    if exc.kind == "size":
        return f"文件太大了（最大{MAX_FILE_BYTES // (1024 * 1024)}MB）。"
    if exc.kind == "alias":
        return (f"{line}用了 YAML 的“锚点/别名”（&名字、*名字）。内容文件里不能用这种写法，"
                "请把每处内容直接写出来（导出的文件就是这样写的）")
    if exc.kind == "depth":
        return f"{line}括号或缩进套得太深了，内容文件最多套{MAX_DEPTH}层"
    if exc.kind == "value":
        return f"{line}有一个值读不出来（例如日期要写成 2026-11-28 这样的真实日期）"
    return f"文件格式（YAML）有错{line}，请用导出的文件改好再传"


def capped(errors: list[FieldError]) -> list[FieldError]:
    """At most MAX_ERRORS_SHOWN errors, and a last line saying how many more there are."""
    if len(errors) <= MAX_ERRORS_SHOWN:
        return errors
    rest = len(errors) - MAX_ERRORS_SHOWN
    return [*errors[:MAX_ERRORS_SHOWN],
            FieldError(None, f"还有 {rest} 处错误没有列出来，请先改好上面这些")]


async def _plan_faq(session: AsyncSession, name: str, items: list[Any],
                    county: Mapping[str, Any]) -> ImportPlan:
    plan = ImportPlan("faq", name)
    published = await load_published(session)
    current = {e.id: (f, e) for f, e in published.entries}
    imported: list[tuple[str, FaqEntry]] = []
    for item in items:
        entry, problems = entry_from_data(item, name)
        plan.errors += [explain(p) for p in problems]
        if entry is not None:
            file = current[entry.id][0] if entry.id in current else FAQ_FILE_PREFIX + name
            imported.append((file, entry))
    if not items:
        plan.errors.append(FieldError(None, "文件里一个条目也没有"))
    ids = {e.id for _, e in imported}
    others = [(f, e) for f, e in published.entries if e.id not in ids]
    baseline = {(p.entry, p.message) for p in check(published.entries, county)}
    plan.errors += [explain(p)
                    for p in check([*others, *imported], county)
                    if p.entry in ids or (p.entry, p.message) not in baseline]
    for file, entry in imported:
        data = entry_data(entry, file)
        row = await session.get(FaqEntryRow, entry.id)
        if row is None:
            plan.entries.append(EntryChange(entry.id, "new", data, diff(None, data)))
            continue
        old = row_data(row)
        changes = [c for c in diff(old, data) if c.field != "file"]
        plan.entries.append(EntryChange(entry.id, "changed" if changes else "same", data,
                                        changes))
    return plan


async def _plan_dictionary(session: AsyncSession, name: str,
                           data: Mapping[str, Any]) -> ImportPlan:
    plan = ImportPlan("dictionary", name)
    problems: list[Problem] = []
    dictionary = load_dictionary_data(data, name, problems)
    problems += check([], {}, dictionary)
    plan.errors += [explain(p) for p in problems]
    for term, replacement in [*dictionary.replacements.items(),
                              *((f, "") for f in dictionary.fillers)]:
        if len(term) > MAX_TERM or len(replacement) > MAX_TERM:
            plan.errors.append(FieldError(None, f"“{term[:20]}”太长了，每个词最多{MAX_TERM}个字"))
    plan.dictionary = dictionary
    rows = (await session.scalars(select(DictionaryRow))).all()
    have = {(r.kind, r.term): r for r in rows}
    wanted: dict[tuple[str, str], str | None] = {
        ("replacement", k): v for k, v in dictionary.replacements.items()}
    wanted.update({("filler", f): None for f in dictionary.fillers})
    for (kind, term), replacement in wanted.items():
        row = have.get((kind, term))
        if row is None:
            plan.terms.append(TermChange(kind, term, None, replacement or term, "new"))
        elif kind == "replacement" and row.replacement != replacement:
            plan.terms.append(TermChange(kind, term, row.replacement, replacement, "changed"))
    for (kind, term), row in sorted(have.items()):
        if (kind, term) not in wanted:
            plan.terms.append(TermChange(kind, term, row.replacement or term, None, "removed"))
    return plan


async def apply_import(session: AsyncSession, plan: ImportPlan, actor: Actor) -> int:
    """Publish a checked plan in the caller's transaction; returns how many things changed."""
    if not plan.ok:
        raise ValueError("the plan has errors")
    changed = 0
    if plan.kind == "faq":
        for change in plan.entries:
            if change.status == "same":
                continue
            entry, problems = entry_from_data(
                {k: v for k, v in change.data.items() if k != "file" and v is not None},
                change.data["file"])
            if entry is None or problems:
                raise ValueError(f"entry {change.entry_id} no longer valid")
            await write(session, entry, change.data["file"], actor, note=f"导入 {plan.file}",
                        action="faq_import", bump=False)
            changed += 1
        if changed:
            session.add(ContentRevision(note=f"admin: import {plan.file} by {actor.username}"))
        return changed
    have = {(r.kind, r.term): r for r in (await session.scalars(select(DictionaryRow))).all()}
    for term in plan.terms:
        row = have.get((term.kind, term.term))
        if term.status == "removed" and row is not None:
            await session.delete(row)
        elif term.status == "new":
            session.add(DictionaryRow(kind=term.kind, term=term.term,
                                      replacement=term.after if term.kind == "replacement"
                                      else None, edited_by_admin=True))
        elif term.status == "changed" and row is not None:
            row.replacement = term.after
            row.edited_by_admin = True
        changed += 1
    if changed:
        record(session, actor, "dictionary_import", "dictionary", plan.file,
               before={"changes": [[t.kind, t.term, t.before] for t in plan.terms]},
               after={"changes": [[t.kind, t.term, t.after, t.status] for t in plan.terms]})
        session.add(ContentRevision(note=f"admin: import {plan.file} by {actor.username}"))
    await session.flush()
    return changed


async def export_zip(session: AsyncSession) -> bytes:
    """faq/*.yaml and dictionary.yaml of the published content, zipped."""
    content = await load_published(session)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="huimin-export-") as tmp:
        written = export_content(list(content.entries), content.dictionary, Path(tmp))
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written:
                archive.write(path, path.relative_to(tmp).as_posix())
    return buffer.getvalue()
