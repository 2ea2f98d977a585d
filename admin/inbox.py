"""The unanswered-questions inbox: questions the bot could not answer with confidence
(bot.models.AskedQuestion), grouped by similarity, and what staff did with them
(admin.models.InboxResolution; the bot's own table is never changed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rapidfuzz import fuzz, process
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.audit import Actor
from admin.models import InboxResolution
from bot.matcher import Tuning, load_tuning
from bot.models import AskedQuestion
from bot.normalize import words
from huimin.clock import utcnow

SIMILAR_AT = 85.0
# token_set_ratio says 100 when one question's words are all inside the other's; a
# much shorter question ("低保") would then join every group, so for texts of very
# different length the words must match in order as well (token_sort_ratio).
LENGTH_RATIO = 0.6
TUNING = load_tuning()
MAX_ROWS = 5000
SUGGEST_AT = 30.0  # the matcher's own bar for offering an entry as a choice
REFERRED = "referred"  # the bot said which other office handles it (bot.dialog.REFERRED)
BAND_LABELS = {"choices": "列出选项让用户选", "unknown": "没答上",
               REFERRED: "告诉去别的部门办"}
NONE_CHOSEN = "0"
# How close an entry is, in a clerk's words, by the matcher's own bands: a score the bot
# answers at, one it offers as a choice, and below that.
LIKENESS = ("很像", "有点像", "不太像")


def likeness(score: float, tuning: Tuning | None = None) -> str:
    """很像 (the bot answers at this score), 有点像 (it would offer the entry as a
    choice) or 不太像: the plain word for a matcher score, which can exceed 100."""
    t = tuning or TUNING
    if score >= t.answer_at:
        return LIKENESS[0]
    if score >= t.choices_at:
        return LIKENESS[1]
    return LIKENESS[2]


@dataclass
class Group:
    """Similar unanswered questions, shown and handled together."""

    text: str  # the normalised text the group is built around
    ids: list[int] = field(default_factory=list)
    texts: Counter[str] = field(default_factory=Counter)
    typed: Counter[str] = field(default_factory=Counter)  # as people typed them (masked)
    bands: Counter[str] = field(default_factory=Counter)
    chosen: Counter[str] = field(default_factory=Counter)
    scores: dict[str, list[float]] = field(default_factory=dict)
    last_asked: datetime | None = None

    @property
    def count(self) -> int:
        return len(self.ids)

    def candidates(self, limit: int = 3) -> list[tuple[str, float]]:
        """The entries the matcher found closest, by mean score over the group."""
        means = {faq_id: sum(s) / self.count for faq_id, s in self.scores.items()}
        return sorted(means.items(), key=lambda kv: -kv[1])[:limit]

    @property
    def shown(self) -> str:
        """The group's question in the asker's own words (masked) when the bot kept
        them (rows older than that have only the normalised text)."""
        return self.typed.most_common(1)[0][0] if self.typed else self.text

    @property
    def referred_only(self) -> bool:
        return set(self.bands) == {REFERRED}

    def suggested_entry(self) -> str | None:
        """The entry users picked most, else the closest one if it is close at all
        (shown as a hint; see :meth:`confident_entry` for what is pre-selected)."""
        picked = [(n, faq_id) for faq_id, n in self.chosen.items() if faq_id != NONE_CHOSEN]
        if picked:
            return max(picked)[1]
        best = self.candidates(1)
        return best[0][0] if best and best[0][1] >= SUGGEST_AT else None

    def confident_entry(self, tuning: Tuning | None = None) -> str | None:
        """The entry to pre-select, only when the evidence is clear; else None and the
        editor chooses. Clear means: more of the users who answered the "did you mean"
        list picked this entry than picked anything else or none of them; or, by the
        matcher's own bands, the closest entry scores (on average over the group) at
        the bar where the bot answers, ahead of the next by the bot's answer margin.
        Never for questions the bot sent to another office: those are not the FAQ's."""
        t = tuning or TUNING
        if self.referred_only:
            return None
        picks = self.chosen.most_common()
        if picks and picks[0][0] != NONE_CHOSEN:
            top, n = picks[0]
            if n > sum(self.chosen.values()) - n:
                return top
        best = self.candidates(2)
        if not best:
            return None
        second = best[1][1] if len(best) > 1 else 0.0
        if best[0][1] >= t.answer_at and best[0][1] - second >= t.answer_margin:
            return best[0][0]
        return None

    def examples(self, limit: int = 5) -> list[tuple[str, int]]:
        """The ways the group's question was asked, in people's words where kept."""
        return (self.typed or self.texts).most_common(limit)


def _similar(a: str, b: str, a_len: int, b_len: int) -> float:
    if min(a_len, b_len) < LENGTH_RATIO * max(a_len, b_len):
        return fuzz.token_sort_ratio(a, b)
    return fuzz.token_set_ratio(a, b)


def group_questions(rows: Iterable[Any], threshold: float = SIMILAR_AT) -> list[Group]:
    """Group rows (id, asked_at, text, typed, band, candidates, chosen_faq_id) by the
    similarity of their normalised text.

    Identical texts always share a group; a text joins the group whose first (most
    asked) text is similar enough, else starts its own. Most asked groups first.
    """
    by_text: dict[str, list[Any]] = {}
    for row in rows:
        by_text.setdefault(row.text, []).append(row)
    order = sorted(by_text, key=lambda t: (-len(by_text[t]), t))
    groups: list[Group] = []
    heads: list[str] = []  # segmented text of each group's first question
    head_lengths: list[int] = []
    for text in order:
        segmented = " ".join(words(text)) or text
        target = None
        if heads:
            hits = process.extract(segmented, heads, scorer=fuzz.token_set_ratio,
                                   score_cutoff=threshold, limit=None)
            for _, _, index in sorted(hits, key=lambda h: (-h[1], h[2])):
                if _similar(segmented, heads[index], len(text),
                            head_lengths[index]) >= threshold:
                    target = groups[index]
                    break
        if target is None:
            target = Group(text=text)
            groups.append(target)
            heads.append(segmented)
            head_lengths.append(len(text))
        for row in by_text[text]:
            target.ids.append(row.id)
            target.texts[text] += 1
            typed = getattr(row, "typed", None)
            if typed:
                target.typed[typed] += 1
            target.bands[row.band] += 1
            if row.chosen_faq_id:
                target.chosen[row.chosen_faq_id] += 1
            for candidate in row.candidates or ():
                faq_id = str(candidate.get("faq_id"))
                target.scores.setdefault(faq_id, []).append(float(candidate.get("score", 0)))
            asked = row.asked_at
            if target.last_asked is None or asked > target.last_asked:
                target.last_asked = asked
    groups.sort(key=lambda g: (-g.count, -(g.last_asked.timestamp() if g.last_asked else 0)))
    return groups


def _unresolved() -> ColumnElement[bool]:
    done = select(InboxResolution.asked_question_id).where(
        InboxResolution.asked_question_id == AskedQuestion.id)
    return ~done.exists()


async def unresolved(session: AsyncSession, since: datetime | None = None) -> list[AskedQuestion]:
    """The newest unresolved questions (at most MAX_ROWS)."""
    query = select(AskedQuestion).where(_unresolved())
    if since is not None:
        query = query.where(AskedQuestion.asked_at >= since)
    rows = await session.scalars(query.order_by(AskedQuestion.asked_at.desc()).limit(MAX_ROWS))
    return list(rows.all())


async def pending_count(session: AsyncSession, referred: bool = False) -> int:
    """Unresolved questions the bot asked back about or could not answer, or (with
    ``referred``) those it sent to another office, counted apart."""
    band = AskedQuestion.band == REFERRED if referred else AskedQuestion.band != REFERRED
    return await session.scalar(select(func.count()).select_from(AskedQuestion)
                                .where(_unresolved(), band)) or 0


async def existing_ids(session: AsyncSession, ids: Iterable[int]) -> list[int]:
    """Those of ``ids`` that are real, still unresolved questions."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    rows = await session.scalars(select(AskedQuestion.id).where(
        AskedQuestion.id.in_(wanted), _unresolved()))
    return list(rows.all())


async def resolve(session: AsyncSession, ids: Iterable[int], action: str,
                  faq_id: str | None, actor: Actor) -> int:
    """Mark questions as handled (idempotent); returns how many were newly marked."""
    todo = await existing_ids(session, ids)
    now = utcnow()
    for asked_id in todo:
        session.add(InboxResolution(asked_question_id=asked_id, action=action, faq_id=faq_id,
                                    resolved_by=actor.username or "", resolved_at=now))
    await session.flush()
    return len(todo)


def parse_ids(raw: str, limit: int = MAX_ROWS) -> list[int]:
    ids = []
    for part in raw.replace(" ", "").split(","):
        if part.isdigit() and len(part) < 12:
            ids.append(int(part))
    return sorted(set(ids))[:limit]
