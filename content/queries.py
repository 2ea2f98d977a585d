"""Query functions for the content tables; other packages call these."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from content.models import ContentRevision, DictionaryRow, FaqEntryRow
from content.schema import Dictionary, FaqEntry
from huimin.db import utcnow


@dataclass(frozen=True)
class PublishedContent:
    """What the bot answers from: entries (with their file), dictionary and revision."""

    entries: tuple[tuple[str, FaqEntry], ...]
    dictionary: Dictionary
    revision: int


def _row_to_entry(row: FaqEntryRow) -> FaqEntry:
    return FaqEntry(
        id=row.id, category=row.category, question=row.question,
        alternatives=tuple(row.alternatives), keywords=tuple(row.keywords),
        answer=row.answer, details=row.details, source=row.source, reviewed=row.reviewed,
    )


def _fields(entry: FaqEntry, file: str) -> dict[str, object]:
    return {
        "file": file, "category": entry.category, "question": entry.question,
        "alternatives": list(entry.alternatives), "keywords": list(entry.keywords),
        "answer": entry.answer, "details": entry.details, "source": entry.source,
        "reviewed": entry.reviewed,
    }


async def current_revision(session: AsyncSession) -> int:
    """The latest content revision number (0 before any content is loaded)."""
    return (await session.scalar(select(func.max(ContentRevision.id)))) or 0


async def load_published(session: AsyncSession) -> PublishedContent:
    """All published entries and the dictionary, as the matcher needs them."""
    rows = (await session.scalars(select(FaqEntryRow).order_by(FaqEntryRow.id))).all()
    terms = (await session.scalars(select(DictionaryRow).order_by(DictionaryRow.id))).all()
    dictionary = Dictionary(
        replacements={t.term: t.replacement or "" for t in terms if t.kind == "replacement"},
        fillers=tuple(t.term for t in terms if t.kind == "filler"),
    )
    return PublishedContent(
        entries=tuple((row.file, _row_to_entry(row)) for row in rows),
        dictionary=dictionary,
        revision=await current_revision(session),
    )


async def sync_shipped_content(
    session: AsyncSession, entries: list[tuple[str, FaqEntry]], dictionary: Dictionary
) -> dict[str, int]:
    """Bring the shipped files into the database without touching admin edits.

    New entries are added; shipped entries that changed in the files are
    updated unless bureau staff edited them. Running it twice changes nothing.
    Returns counts of what was added and updated.
    """
    counts = {"added": 0, "updated": 0, "kept_admin_edits": 0, "dictionary_added": 0,
              "dictionary_updated": 0}
    existing = {row.id: row for row in (await session.scalars(select(FaqEntryRow))).all()}
    for file, entry in entries:
        row = existing.get(entry.id)
        values = _fields(entry, file)
        if row is None:
            session.add(FaqEntryRow(id=entry.id, **values))
            counts["added"] += 1
        elif row.edited_by_admin:
            counts["kept_admin_edits"] += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            counts["updated"] += 1
    terms = {(t.kind, t.term): t for t in (await session.scalars(select(DictionaryRow))).all()}
    wanted = [("replacement", k, v) for k, v in dictionary.replacements.items()]
    wanted += [("filler", f, None) for f in dictionary.fillers]
    for kind, term, replacement in wanted:
        row = terms.get((kind, term))
        if row is None:
            session.add(DictionaryRow(kind=kind, term=term, replacement=replacement))
            counts["dictionary_added"] += 1
        elif not row.edited_by_admin and row.replacement != replacement:
            row.replacement = replacement
            counts["dictionary_updated"] += 1
    if any(counts[k] for k in ("added", "updated", "dictionary_added", "dictionary_updated")):
        session.add(ContentRevision(note="shipped content loaded"))
    await session.flush()
    return counts
