""""试一试": run a question through the real matcher, on the published content or on
the published content with one draft in place of (or added to) its entry."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.dialog import Snapshot, reply_to_match
from bot.matcher import Band
from content.guide import Guide
from content.queries import PublishedContent, current_revision, load_published
from content.schema import FaqEntry
from huimin.db import Database

BAND_LABELS = {
    Band.ANSWER: "直接回答",
    Band.CHOICES: "列出几条让用户选（“您是想问……”）",
    Band.UNKNOWN: "答不上来（给出菜单和电话）",
}


@dataclass(frozen=True)
class Candidate:
    faq_id: str
    question: str
    score: float


@dataclass(frozen=True)
class TryResult:
    question: str
    normalised: str
    band: str
    band_label: str
    candidates: list[Candidate]
    answered_id: str | None
    reply: str
    referral: str | None


def with_entry(content: PublishedContent, entry: FaqEntry, file: str) -> PublishedContent:
    entries = [(f, e) for f, e in content.entries if e.id != entry.id]
    return PublishedContent(entries=(*entries, (file, entry)), dictionary=content.dictionary,
                            revision=-1)


class TryOut:
    """Keeps a matcher for the newest published revision; builds draft matchers on demand."""

    def __init__(self, guide: Guide, county: Mapping[str, Any]) -> None:
        self.guide = guide
        self.county = county
        self._published: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def published(self, db: Database) -> Snapshot:
        async with self._lock:
            async with db.session() as session:
                revision = await current_revision(session)
                if self._published is not None and self._published.revision == revision:
                    return self._published
                content = await load_published(session)
            self._published = await asyncio.to_thread(Snapshot.build, content, self.county,
                                                      self.guide)
            return self._published

    async def with_draft(self, db: Database, entry: FaqEntry, file: str) -> Snapshot:
        async with db.session() as session:
            content = await load_published(session)
        return await asyncio.to_thread(Snapshot.build, with_entry(content, entry, file),
                                       self.county, self.guide)

    def run(self, snapshot: Snapshot, question: str) -> TryResult:
        match = snapshot.matcher.match(question)
        candidates = [Candidate(c.faq_id, snapshot.questions.get(c.faq_id, c.faq_id), c.score)
                      for c in match.candidates]
        return TryResult(
            question=question, normalised=match.normalised.text, band=match.band.value,
            band_label=BAND_LABELS[match.band], candidates=candidates,
            answered_id=match.faq_id,
            reply=reply_to_match(match, snapshot, self.county, self.guide),
            referral=match.referral)
