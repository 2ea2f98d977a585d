"""The colloquial/typo dictionary: replacement words (俺→我) and filler words, edited by
staff. Every change marks the word edited_by_admin (so ``huimin init`` leaves it alone)
and adds a content revision so every bot process reloads."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.audit import Actor, record
from content.models import ContentRevision, DictionaryRow
from content.schema import text_key

KINDS = {"replacement": "替换词", "filler": "语气词（去掉不看）"}
MAX_TERM = 64


class DictionaryError(ValueError):
    """A change that cannot be made; the message is for staff."""


def _row(row: DictionaryRow) -> dict[str, object]:
    return {"kind": row.kind, "term": row.term, "replacement": row.replacement,
            "edited_by_admin": row.edited_by_admin}


def _check(kind: str, term: str, replacement: str | None) -> None:
    if kind not in KINDS:
        raise DictionaryError("请选择是替换词还是语气词")
    if not term:
        raise DictionaryError("词不能空着")
    if len(term) > MAX_TERM or len(replacement or "") > MAX_TERM:
        raise DictionaryError(f"每个词最多{MAX_TERM}个字")
    if not text_key(term):
        raise DictionaryError("词里要有汉字、字母或数字")
    if kind == "replacement":
        if not replacement:
            raise DictionaryError("请写上要换成的标准说法")
        if text_key(replacement) == text_key(term):
            raise DictionaryError("替换后的词不能和原来的词一样")


async def terms(session: AsyncSession, kind: str, search: str = "") -> list[DictionaryRow]:
    query = select(DictionaryRow).where(DictionaryRow.kind == kind)
    if search:
        like = f"%{search}%"
        query = query.where(DictionaryRow.term.like(like) | DictionaryRow.replacement.like(like))
    rows = await session.scalars(query.order_by(DictionaryRow.term))
    return list(rows.all())


def _bump(session: AsyncSession, actor: Actor, what: str) -> None:
    session.add(ContentRevision(note=f"admin: dictionary {what} by {actor.username}"[:200]))


async def add(session: AsyncSession, kind: str, term: str, replacement: str | None,
              actor: Actor) -> DictionaryRow:
    term, replacement = term.strip(), (replacement or "").strip() or None
    if kind == "filler":
        replacement = None
    _check(kind, term, replacement)
    existing = await session.scalar(select(DictionaryRow).where(
        DictionaryRow.kind == kind, DictionaryRow.term == term))
    if existing is not None:
        raise DictionaryError(f"“{term}”已经在词典里了，可以在下面的列表里修改")
    row = DictionaryRow(kind=kind, term=term, replacement=replacement, edited_by_admin=True)
    session.add(row)
    await session.flush()
    record(session, actor, "dictionary_add", "dictionary", f"{kind}:{term}", after=_row(row))
    _bump(session, actor, f"add {term}")
    return row


async def change(session: AsyncSession, term_id: int, replacement: str,
                 actor: Actor) -> DictionaryRow:
    row = await session.get(DictionaryRow, term_id)
    if row is None or row.kind != "replacement":
        raise DictionaryError("这个词已经不在词典里了")
    replacement = replacement.strip()
    _check(row.kind, row.term, replacement)
    if replacement == row.replacement:
        return row
    before = _row(row)
    row.replacement = replacement
    row.edited_by_admin = True
    record(session, actor, "dictionary_change", "dictionary", f"{row.kind}:{row.term}",
           before=before, after=_row(row))
    _bump(session, actor, f"change {row.term}")
    return row


async def remove(session: AsyncSession, term_id: int, actor: Actor) -> DictionaryRow:
    row = await session.get(DictionaryRow, term_id)
    if row is None:
        raise DictionaryError("这个词已经不在词典里了")
    record(session, actor, "dictionary_remove", "dictionary", f"{row.kind}:{row.term}",
           before=_row(row))
    await session.delete(row)
    _bump(session, actor, f"remove {row.term}")
    return row
