"""Life situations (卧床、没儿没女、遭了灾 …) that point to programmes, edited by staff:
the words that tell one, the programme words it stands for and the FAQ entries to
offer. Every change marks the situation edited_by_admin (so ``huimin init`` leaves it
alone; a removed one stays removed) and adds a content revision so every bot process
reloads."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.audit import Actor, record
from content.guidance import MAX_OFFER
from content.models import ContentRevision, FaqEntryRow, SituationRow
from content.schema import text_key
from huimin.clock import utcnow

MAX_NAME = 64
MAX_WORD = 20
MAX_WORDS = 60
_SPLIT = re.compile(r"[\s,，、;；/]+")


class SituationError(ValueError):
    """A change that cannot be made; the message is for staff."""


def words_of(text: str) -> list[str]:
    """The words staff typed, split on spaces, commas or 、, without repeats."""
    return list(dict.fromkeys(w for w in _SPLIT.split(text.strip()) if w))


def _row(row: SituationRow) -> dict[str, object]:
    return {"name": row.name, "cues": row.cues, "means": row.means, "offer": row.offer,
            "removed": row.removed}


async def situations(session: AsyncSession) -> list[SituationRow]:
    """The situations the bot uses (not removed), oldest first."""
    rows = await session.scalars(select(SituationRow).where(SituationRow.removed.is_(False))
                                 .order_by(SituationRow.id))
    return list(rows.all())


async def entry_questions(session: AsyncSession) -> dict[str, str]:
    """Every published entry's id and question, for choosing what to offer."""
    rows = (await session.execute(select(FaqEntryRow.id, FaqEntryRow.question)
                                  .order_by(FaqEntryRow.id))).all()
    return {faq_id: question for faq_id, question in rows}


async def add(session: AsyncSession, name: str, cues: str, means: str, offer: list[str],
              actor: Actor) -> SituationRow:
    name = name.strip()
    cue_list, mean_list = words_of(cues), words_of(means)
    offer = list(dict.fromkeys(o.strip() for o in offer if o.strip()))
    if not name:
        raise SituationError("请给这种情况起个名字")
    if len(name) > MAX_NAME:
        raise SituationError(f"名字最多{MAX_NAME}个字")
    if not cue_list:
        raise SituationError("请写上群众描述这种情况时会说的词")
    for word in (*cue_list, *mean_list):
        if len(word) > MAX_WORD or not text_key(word):
            raise SituationError(f"“{word[:MAX_WORD]}”不行：每个词最多{MAX_WORD}个字，要有汉字")
    if len(cue_list) + len(mean_list) > MAX_WORDS:
        raise SituationError(f"词太多了，最多{MAX_WORDS}个")
    if not offer:
        raise SituationError("请至少选一个可能对应的问答条目")
    if len(offer) > MAX_OFFER:
        raise SituationError(f"最多选{MAX_OFFER}个问答条目")
    known = await entry_questions(session)
    if any(o not in known for o in offer):
        raise SituationError("选的问答条目已经不在了，请刷新页面再选")
    rows = (await session.scalars(select(SituationRow))).all()
    same = next((r for r in rows if r.name == name), None)
    if same is not None and not same.removed:
        raise SituationError(f"“{name}”已经有了，换个名字，或先删掉原来的")
    for other in rows:
        shared = [c for c in cue_list if not other.removed and c in other.cues]
        if shared:
            raise SituationError(f"“{shared[0]}”已经在“{other.name}”里了")
    values = {"cues": cue_list, "means": mean_list, "offer": offer, "removed": False,
              "edited_by_admin": True, "updated_at": utcnow()}
    if same is not None:  # a removed one of this name comes back with the new words
        before = _row(same)
        for key, value in values.items():
            setattr(same, key, value)
        row = same
    else:
        before = None
        row = SituationRow(name=name, **values)
        session.add(row)
    await session.flush()
    record(session, actor, "situation_add", "situation", name, before=before, after=_row(row))
    session.add(ContentRevision(note=f"admin: situation add {name} by {actor.username}"[:200]))
    return row


async def remove(session: AsyncSession, situation_id: int, actor: Actor) -> SituationRow:
    row = await session.get(SituationRow, situation_id)
    if row is None or row.removed:
        raise SituationError("这种情况已经删掉了")
    before = _row(row)
    row.removed, row.edited_by_admin, row.updated_at = True, True, utcnow()
    record(session, actor, "situation_remove", "situation", row.name, before=before)
    session.add(ContentRevision(
        note=f"admin: situation remove {row.name} by {actor.username}"[:200]))
    return row
