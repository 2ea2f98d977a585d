"""Fuzzy matching of a question against the curated FAQ.

Everything is compared on sound-coded text (see ``bot.normalize``), so that
homophone typos cost nothing. Each entry gets a score from six signals:

* ``phrase``: rapidfuzz ``ratio`` against the closest of its phrasings;
* ``words``: the same on jieba word sequences;
* ``cover``: the share of the question's words (IDF-weighted) the entry knows;
* ``grams``: the same on syllables and syllable pairs, which survives
  segmentation differences;
* ``dice``: IDF-weighted syllable-pair overlap with the closest phrasing,
  which rewards long run-on questions that contain a phrasing;
* ``keywords``: how many of the entry's keywords the question contains;

less a penalty for each programme (低保, 五保/特困 …) the question names and the
entry never mentions.

The band then leans towards declining, because a wrong confident answer is the
worst outcome: a question naming another department's business is declined
with a pointer; one with no word of this bureau's domain is answered only on a
near-exact match; the rest are answered when the best entry is clearly ahead,
offered as a short "did you mean" list when close, declined otherwise.
Weights and thresholds were chosen on ``tests/data/devset.yaml`` and checked
on ``tests/data/holdout.yaml`` (see README).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    """Signal weights (each signal is 0..1) and band thresholds (on a 0..100 score)."""

    phrase: float = 0.4
    words: float = 0.2
    cover: float = 0.3
    grams: float = 0.3
    dice: float = 0.3
    keyword: float = 0.04
    programme_penalty: float = 15.0
    answer_at: float = 40.0
    answer_margin: float = 10.0
    answer_min_grams: float = 0.2
    choices_at: float = 30.0
    choices_within: float = 15.0
    off_domain_answer_at: float = 90.0
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
    reason: str | None = None  # why this band, when it is not the plain score

    @property
    def faq_id(self) -> str | None:
        return self.candidates[0].faq_id if self.band is Band.ANSWER else None

    @property
    def choices(self) -> list[str]:
        return [c.faq_id for c in self.candidates] if self.band is Band.CHOICES else []

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0


def _grams(sound: str) -> set[str]:
    return set(sound) | {sound[i:i + 2] for i in range(len(sound) - 1)}


class _Postings:
    """Inverted index from a symbol to the rows that contain it, with IDF weights."""

    def __init__(self, rows: list[set[str]], n_docs: int, doc_of_row: np.ndarray) -> None:
        by_symbol: dict[str, list[int]] = {}
        for row, symbols in enumerate(rows):
            for symbol in symbols:
                by_symbol.setdefault(symbol, []).append(row)
        self.rows = {s: np.array(r, dtype=np.intp) for s, r in by_symbol.items()}
        docs = {s: len(set(doc_of_row[r].tolist())) for s, r in by_symbol.items()}
        self.idf = {s: math.log((n_docs + 1) / (d + 0.5)) for s, d in docs.items()}
        self.unknown_idf = math.log((n_docs + 1) / 0.5)
        self.n_rows = len(rows)
        self.mass = np.array([sum(self.idf[s] for s in symbols) for symbols in rows])

    def overlap(self, symbols: Iterable[str]) -> tuple[np.ndarray, float]:
        """IDF mass each row shares with ``symbols``, and the symbols' own mass."""
        hits, weights, total = [], [], 0.0
        for symbol in symbols:
            weight = self.idf.get(symbol, self.unknown_idf)
            total += weight
            rows = self.rows.get(symbol)
            if rows is not None:
                hits.append(rows)
                weights.append(np.full(len(rows), weight))
        if not hits:
            return np.zeros(self.n_rows), total
        shared = np.bincount(np.concatenate(hits), weights=np.concatenate(weights),
                             minlength=self.n_rows)
        return shared, total


class _CharCounts:
    """Which strings contain each character, and how often: an upper bound on
    rapidfuzz's ``ratio`` (2 * LCS / total length) without computing it."""

    def __init__(self, strings: list[str]) -> None:
        rows: dict[str, list[int]] = {}
        counts: dict[str, list[int]] = {}
        for row, text in enumerate(strings):
            for char, count in Counter(text).items():
                rows.setdefault(char, []).append(row)
                counts.setdefault(char, []).append(count)
        self.rows = {c: np.array(r, dtype=np.intp) for c, r in rows.items()}
        self.counts = {c: np.array(n, dtype=np.float64) for c, n in counts.items()}
        self.lengths = np.array([len(t) for t in strings], dtype=np.float64)

    def ratio_bound(self, query: str) -> np.ndarray:
        """For each string, a value >= fuzz.ratio(query, string) / 100."""
        shared = np.zeros(len(self.lengths))
        for char, wanted in Counter(query).items():
            rows = self.rows.get(char)
            if rows is not None:
                shared[rows] += np.minimum(self.counts[char], wanted)
        return 2 * shared / np.maximum(self.lengths + len(query), 1)


class Matcher:
    """Matches questions against one set of FAQ entries.

    Above ``PRUNE_ABOVE`` phrasings the two rapidfuzz scans run only on the entries
    whose upper bound could still reach the top three (same verdicts, measured
    about 3x faster on 1,000 entries).
    """

    PRUNE_ABOVE = 2000

    def __init__(
        self,
        entries: Iterable[FaqEntry],
        dictionary: Dictionary,
        other_departments: Mapping[str, str] | None = None,
        domain_terms: Iterable[str] = (),
        programmes: Iterable[Iterable[str]] = (),
        tuning: Tuning | None = None,
    ) -> None:
        self.entries = {e.id: e for e in entries}
        self.tuning = tuning or Tuning()
        for entry in self.entries.values():
            add_words(entry.keywords)
        add_words(domain_terms)
        self.normalise = Normaliser(dictionary)
        clean = self.normalise.clean
        self.normalise.learn(clean(t) for t in (
            *domain_terms, *(name for group in programmes for name in group),
            *(other_departments or {}),
            *(k for e in self.entries.values() for k in e.keywords)))
        self._other = {clean(k): v for k, v in (other_departments or {}).items() if clean(k)}
        self._programmes = [tuple(sound_code(clean(name)) for name in group if clean(name))
                            for group in programmes]
        self._build(list(self.entries.values()))
        # Which entries mention each programme (by any of its names) in any phrasing.
        self._programme_entries = [
            np.array([any(code in sound for sound in self._entry_sounds[i] for code in group)
                      for i in range(len(self.entry_ids))], dtype=bool)
            for group in self._programmes
        ]
        self._anchors = ({sound_code(clean(t)) for t in domain_terms if clean(t)}
                         | set(self._keyword_entries)
                         | {code for group in self._programmes for code in group})

    def _build(self, entries: list[FaqEntry]) -> None:
        self.entry_ids = [e.id for e in entries]
        sounds: list[str] = []
        word_strings: list[str] = []
        phrase_grams: list[set[str]] = []
        owner: list[int] = []
        entry_words: list[set[str]] = []
        self._entry_sounds: list[list[str]] = []
        keyword_entries: dict[str, list[int]] = {}
        tokens: list[str] = []
        for i, entry in enumerate(entries):
            known: set[str] = set()
            self._entry_sounds.append([sound_code(self.normalise.clean(k))
                                       for k in entry.keywords])
            for phrasing in (entry.question, *entry.alternatives):
                norm = self.normalise(phrasing)
                self._entry_sounds[i].append(norm.sound)
                sounds.append(norm.sound)
                word_strings.append(norm.word_string)
                phrase_grams.append(_grams(norm.sound))
                owner.append(i)
                known.update(norm.words)
                tokens += norm.tokens
            for keyword in entry.keywords:
                code = sound_code(self.normalise.clean(keyword))
                if code:
                    keyword_entries.setdefault(code, []).append(i)
                    known.add(code)
            entry_words.append(known)
        self.normalise.learn(tokens)
        n = len(entries)
        owner_array = np.array(owner, dtype=np.intp)
        identity = np.arange(n, dtype=np.intp)
        self._sounds, self._word_strings = sounds, word_strings
        self._owner = owner_array
        self._starts = np.searchsorted(owner_array, identity) if n else owner_array
        self._words = _Postings(entry_words, n, identity)
        self._phrase_grams = _Postings(phrase_grams, n, owner_array)
        entry_grams = [set[str]() for _ in range(n)]
        for row, grams in enumerate(phrase_grams):
            entry_grams[owner[row]] |= grams
        self._entry_grams = _Postings(entry_grams, n, identity)
        self._keyword_entries = {k: np.array(v, dtype=np.intp)
                                 for k, v in keyword_entries.items()}
        self._ends = np.append(self._starts[1:], len(sounds)) if n else self._starts
        self._prune = len(sounds) > self.PRUNE_ABOVE
        if self._prune:
            self._sound_chars = _CharCounts(sounds)
            self._word_chars = _CharCounts(word_strings)

    def signals(self, norm: Normalised) -> dict[str, np.ndarray]:
        """Each signal (0..1) for every entry, in ``entry_ids`` order.

        When pruning, ``phrase`` and ``words`` are exact for the entries that can
        rank in the top three and upper bounds for the rest."""
        n = len(self.entry_ids)
        shared_words, word_mass = self._words.overlap(set(norm.words))
        grams = _grams(norm.sound)
        shared_entry, gram_mass = self._entry_grams.overlap(grams)
        shared_phrase, _ = self._phrase_grams.overlap(grams)
        dice = 2 * shared_phrase / (gram_mass + self._phrase_grams.mass)
        keywords = np.zeros(n)
        for code, owners in self._keyword_entries.items():
            if code in norm.sound:
                keywords[owners] += 1
        signals = {
            "cover": shared_words / word_mass if word_mass else np.zeros(n),
            "grams": shared_entry / gram_mass if gram_mass else np.zeros(n),
            "dice": np.maximum.reduceat(dice, self._starts),
            "keyword": np.minimum(keywords, 2),
        }
        if not self._prune:
            signals["phrase"] = self._ratios(norm.sound, self._sounds)
            signals["words"] = self._ratios(norm.word_string, self._word_strings)
            return signals
        signals["phrase"] = np.maximum.reduceat(
            self._sound_chars.ratio_bound(norm.sound), self._starts)
        signals["words"] = np.maximum.reduceat(
            self._word_chars.ratio_bound(norm.word_string), self._starts)
        self._refine(norm, signals)
        return signals

    def _ratios(self, query: str, choices: list[str]) -> np.ndarray:
        scores = process.cdist([query], choices, scorer=fuzz.ratio, dtype=np.float32,
                               workers=1)[0] / 100.0
        return np.maximum.reduceat(scores, self._starts)

    def _combine(self, signals: dict[str, np.ndarray], named: list[int]) -> np.ndarray:
        t = self.tuning
        combined = 100.0 * sum(getattr(t, name) * values for name, values in signals.items())
        for i in named:
            combined = combined - t.programme_penalty * ~self._programme_entries[i]
        return combined

    def _named_programmes(self, norm: Normalised) -> list[int]:
        return [i for i, group in enumerate(self._programmes)
                if any(code in norm.sound for code in group)]

    def _refine(self, norm: Normalised, signals: dict[str, np.ndarray]) -> None:
        """Replace bounds with exact ratios, best-bounded entries first, until no
        unchecked entry could reach the top three."""
        upper = self._combine(signals, self._named_programmes(norm))
        order = np.argsort(-upper, kind="stable")
        exact = np.full(len(order), -np.inf)
        keep = max(self.tuning.max_choices, 2)
        done, batch = 0, 8
        while done < len(order):
            chunk = order[done:done + batch]
            rows = np.concatenate([np.arange(self._starts[e], self._ends[e]) for e in chunk])
            sounds = [self._sounds[r] for r in rows]
            words = [self._word_strings[r] for r in rows]
            phrase = process.cdist([norm.sound], sounds, scorer=fuzz.ratio,
                                   dtype=np.float32, workers=1)[0] / 100.0
            worded = process.cdist([norm.word_string], words, scorer=fuzz.ratio,
                                   dtype=np.float32, workers=1)[0] / 100.0
            offset = 0
            for e in chunk:
                size = self._ends[e] - self._starts[e]
                signals["phrase"][e] = phrase[offset:offset + size].max()
                signals["words"][e] = worded[offset:offset + size].max()
                offset += size
            exact[chunk] = self._combine({k: v[chunk] for k, v in signals.items()},
                                         []) - self._penalty(norm, chunk)
            done += len(chunk)
            batch *= 2
            if done < len(order):
                kth = np.sort(exact)[-keep] if done >= keep else -np.inf
                if upper[order[done]] < kth:
                    break

    def _penalty(self, norm: Normalised, entries: np.ndarray) -> np.ndarray:
        penalty = np.zeros(len(entries))
        for i in self._named_programmes(norm):
            penalty += self.tuning.programme_penalty * ~self._programme_entries[i][entries]
        return penalty

    def match(self, question: str) -> Match:
        """Score a question and decide its band."""
        norm = self.normalise(question)
        t = self.tuning
        if not self.entry_ids or not norm.sound:
            return Match(Band.UNKNOWN, (), norm)
        signals = self.signals(norm)
        named = self._named_programmes(norm)
        combined = self._combine(signals, named)
        order = np.argsort(-combined, kind="stable")[: max(t.max_choices, 2)]
        candidates = tuple(
            Candidate(self.entry_ids[i], round(float(combined[i]), 1)) for i in order)
        top, second = candidates[0].score, candidates[1].score if len(candidates) > 1 else 0.0
        referral = None if named else self._referral(norm.text)
        if referral:
            return Match(Band.UNKNOWN, candidates, norm, referral=referral)
        in_domain = any(code in norm.sound for code in self._anchors)
        answer_at = t.answer_at if in_domain else t.off_domain_answer_at
        if (top >= answer_at and top - second >= t.answer_margin
                and signals["grams"][order[0]] >= t.answer_min_grams):
            return Match(Band.ANSWER, candidates[:1], norm)
        if in_domain and top >= t.choices_at:
            close = tuple(c for c in candidates[: t.max_choices]
                          if c.score >= t.choices_at and top - c.score <= t.choices_within)
            return Match(Band.CHOICES, close, norm)
        return Match(Band.UNKNOWN, candidates, norm)

    def _referral(self, text: str) -> str | None:
        for term, department in self._other.items():
            if term in text:
                return department
        return None
