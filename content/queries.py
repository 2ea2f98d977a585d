"""Query functions for the content tables; other packages call these."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from content.guidance import Situation, load_guidance
from content.models import ContentRevision, DictionaryRow, FaqEntryRow, SituationRow
from content.schema import Dictionary, FaqEntry
from huimin.clock import utcnow


@dataclass(frozen=True)
class PublishedContent:
    """What the bot answers from: entries (with their file), dictionary and revision."""

    entries: tuple[tuple[str, FaqEntry], ...]
    dictionary: Dictionary
    revision: int
    # Life situations from the database; None: none loaded, use content/situations.yaml.
    situations: tuple[Situation, ...] | None = None


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
    situations = (await session.scalars(select(SituationRow).order_by(SituationRow.id))).all()
    return PublishedContent(
        entries=tuple((row.file, _row_to_entry(row)) for row in rows),
        dictionary=dictionary,
        revision=await current_revision(session),
        situations=tuple(Situation(s.name, tuple(s.cues), tuple(s.means), tuple(s.offer))
                         for s in situations if not s.removed) if situations else None,
    )


async def sync_shipped_content(
    session: AsyncSession, entries: list[tuple[str, FaqEntry]], dictionary: Dictionary,
    situations: tuple[Situation, ...] | None = None,
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
    counts.update(await _sync_situations(session, situations))
    if any(counts[k] for k in ("added", "updated", "dictionary_added", "dictionary_updated",
                               "situations_added", "situations_updated")):
        session.add(ContentRevision(note="shipped content loaded"))
    await session.flush()
    return counts


async def _sync_situations(session: AsyncSession,
                           situations: tuple[Situation, ...] | None) -> dict[str, int]:
    """The shipped situations (``content/situations.yaml`` unless given): new ones
    added, changed ones updated unless staff edited or removed them."""
    if situations is None:
        situations = load_guidance().situations
    counts = {"situations_added": 0, "situations_updated": 0}
    rows = {r.name: r for r in (await session.scalars(select(SituationRow))).all()}
    for situation in situations:
        values = {"cues": list(situation.cues), "means": list(situation.means),
                  "offer": list(situation.offer)}
        row = rows.get(situation.name)
        if row is None:
            session.add(SituationRow(name=situation.name, **values))
            counts["situations_added"] += 1
        elif not row.edited_by_admin and any(getattr(row, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            counts["situations_updated"] += 1
    return counts
