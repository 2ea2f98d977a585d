"""Fuzzy matching of a question against the curated FAQ.

Each entry is scored from three signals, all computed on sound-coded text so
that homophone typos cost nothing:

* ``phrase``: rapidfuzz ``ratio`` against the closest of the entry's phrasings;
* ``words``: the same on word sequences (order-tolerant enough for run-ons);
* ``cover``: how much of the question's information (IDF-weighted words) the
  entry's vocabulary knows; an off-topic question has words no entry knows.

The best score decides the band: a confident answer, a short "did you mean"
list, or an honest "I don't know". Bands lean towards declining: a wrong
confident answer is the worst outcome.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from rapidfuzz import fuzz, process

from bot.normalize import Normalised, Normaliser, add_words, sound_code
from content.schema import Dictionary, FaqEntry


class Band(StrEnum):
    ANSWER = "answer"
    CHOICES = "choices"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Tuning:
    """Weights and thresholds, chosen on the dev set (tests/data/devset.yaml)."""

    phrase_weight: float = 0.45
    words_weight: float = 0.20
    cover_weight: float = 0.35
    keyword_bonus: float = 6.0
    answer_at: float = 68.0
    answer_margin: float = 6.0
    choices_at: float = 50.0
    choices_within: float = 14.0
    min_cover: float = 0.45
    max_choices: int = 3


@dataclass(frozen=True)
class Candidate:
    faq_id: str
    score: float


@dataclass(frozen=True)
class Match:
    """The matcher's verdict on one question."""

    band: Band
    candidates: tuple[Candidate, ...]
    normalised: Normalised
    referral: str | None = None  # another department, when the question is theirs

    @property
    def faq_id(self) -> str | None:
        return self.candidates[0].faq_id if self.band is Band.ANSWER else None

    @property
    def choices(self) -> list[str]:
        return [c.faq_id for c in self.candidates] if self.band is Band.CHOICES else []

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0


@dataclass
class _Index:
    entry_ids: list[str]
    phrase_sounds: list[str]
    phrase_words: list[str]
    starts: np.ndarray  # first phrasing of each entry (phrasings grouped by entry)
    postings: dict[str, np.ndarray]  # word sound -> entries whose vocabulary has it
    idf: dict[str, float]
    unknown_idf: float
    keywords: dict[str, np.ndarray] = field(default_factory=dict)  # keyword sound -> entries


class Matcher:
    """Matches questions against one set of FAQ entries."""

    def __init__(
        self,
        entries: Iterable[FaqEntry],
        dictionary: Dictionary,
        other_departments: Mapping[str, str] | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        self.entries = {e.id: e for e in entries}
        self.tuning = tuning or Tuning()
        for entry in self.entries.values():
            add_words(entry.keywords)
        self.normalise = Normaliser(dictionary)
        self._other = {self.normalise.clean(k): v for k, v in (other_departments or {}).items()}
        self._index = self._build(list(self.entries.values()))

    def _build(self, entries: list[FaqEntry]) -> _Index:
        ids, sounds, word_strings, starts = [], [], [], []
        vocab: list[set[str]] = []
        keywords: dict[str, set[int]] = {}
        for i, entry in enumerate(entries):
            ids.append(entry.id)
            starts.append(len(sounds))
            known: set[str] = set()
            for phrasing in (entry.question, *entry.alternatives):
                norm = self.normalise(phrasing)
                sounds.append(norm.sound)
                word_strings.append(norm.word_string)
                known.update(norm.words)
            for keyword in entry.keywords:
                code = sound_code(self.normalise.clean(keyword))
                if code:
                    keywords.setdefault(code, set()).add(i)
                    known.add(code)
            vocab.append(known)
        df: dict[str, list[int]] = {}
        for i, known in enumerate(vocab):
            for word in known:
                df.setdefault(word, []).append(i)
        n = max(len(entries), 1)
        idf = {w: math.log((n + 1) / (len(hits) + 0.5)) for w, hits in df.items()}
        return _Index(
            entry_ids=ids,
            phrase_sounds=sounds,
            phrase_words=word_strings,
            starts=np.array(starts, dtype=np.intp),
            postings={w: np.array(h, dtype=np.intp) for w, h in df.items()},
            idf=idf,
            unknown_idf=math.log((n + 1) / 0.5),
            keywords={k: np.array(sorted(v), dtype=np.intp) for k, v in keywords.items()},
        )

    def scores(self, norm: Normalised) -> tuple[np.ndarray, np.ndarray]:
        """Per-entry combined score and coverage for a normalised question."""
        index, t = self._index, self.tuning
        n = len(index.entry_ids)
        if not n or not norm.sound:
            return np.zeros(n), np.zeros(n)
        phrase = process.cdist([norm.sound], index.phrase_sounds, scorer=fuzz.ratio,
                               dtype=np.float32)[0]
        worded = process.cdist([norm.word_string], index.phrase_words, scorer=fuzz.ratio,
                               dtype=np.float32)[0]
        phrase_best = np.maximum.reduceat(phrase, index.starts)
        words_best = np.maximum.reduceat(worded, index.starts)
        cover = np.zeros(n)
        total = 0.0
        for word in set(norm.words):
            weight = index.idf.get(word, index.unknown_idf)
            total += weight
            hits = index.postings.get(word)
            if hits is not None:
                cover[hits] += weight
        if total:
            cover /= total
        combined = (t.phrase_weight * phrase_best + t.words_weight * words_best
                    + t.cover_weight * 100.0 * cover)
        for code, hits in index.keywords.items():
            if code in norm.sound:
                combined[hits] += t.keyword_bonus
        return combined, cover

    def match(self, question: str) -> Match:
        """Score a question and decide its band."""
        norm = self.normalise(question)
        t = self.tuning
        combined, cover = self.scores(norm)
        if not len(combined):
            return Match(Band.UNKNOWN, (), norm)
        order = np.argsort(-combined)[: max(t.max_choices, 2)]
        candidates = tuple(
            Candidate(self._index.entry_ids[i], round(float(combined[i]), 1)) for i in order
        )
        top = candidates[0].score
        second = candidates[1].score if len(candidates) > 1 else 0.0
        top_cover = float(cover[order[0]])
        referral = self._referral(norm.text)
        if referral and not any(code in norm.sound for code in self._index.keywords):
            return Match(Band.UNKNOWN, candidates, norm, referral=referral)
        if top >= t.answer_at and top - second >= t.answer_margin and top_cover >= t.min_cover:
            return Match(Band.ANSWER, candidates[:1], norm)
        if top >= t.choices_at:
            close = tuple(c for c in candidates[: t.max_choices]
                          if c.score >= t.choices_at and top - c.score <= t.choices_within)
            return Match(Band.CHOICES, close, norm)
        return Match(Band.UNKNOWN, candidates, norm)

    def _referral(self, text: str) -> str | None:
        for term, department in self._other.items():
            if term and term in text:
                return department
        return None
