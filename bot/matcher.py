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
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

import numpy as np
import yaml
from rapidfuzz import fuzz, process

from bot.normalize import Normalised, Normaliser, add_words, sound_code
from content.guidance import Guidance
from content.schema import Dictionary, FaqEntry

# A clause that asks something (after cleaning: 咋 is 怎么, 啥 is 什么 …).
_ASKING = re.compile(r"怎么|怎样|什么|为何|吗|么$|多少|多久|多长|哪|谁|(?<![好这前那])几|"
                     r"能不能|能否|可不可以|是不是|有没有|有没|要不要|行不行|中不中|够不够|算不算|管不管|会不会|"
                     r"给不给|还能|能.*不$|[^不]不$|没$")
_CLAUSE_END = re.compile(r"([。，,！!？?；;：:\n…]+|\s+)")
# Numbers that decide who an entry is for (content/situations.yaml, ``numbers``).
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_AGE = re.compile(r"(?<![\d.])(\d{1,3})(?:多|来)?周?岁"
                  r"|(?<![\d.])(\d{2,3})多?了"
                  r"|(?<![一二三四五六七八九十])([一二三四五六七八九]?十[一二三四五六七八九]?)"
                  r"(?:多|来)?(岁|了)")
_GRADE = re.compile(r"([一二三四1-4])级")


def _chinese_number(text: str) -> int:
    """一..九十九 written with 十 (十七, 六十五, 七十)."""
    tens, _, ones = text.partition("十")
    return _CN_DIGITS.get(tens, 1) * 10 + _CN_DIGITS.get(ones, 0)


def numbers_in(text: str) -> dict[str, tuple[int, ...]]:
    """The ages and disability grades a cleaned message gives. "…了" counts as an
    age only from 40 ("六十五了", "68了"), so "3个月了" or "十年了" do not."""
    ages = []
    for m in _AGE.finditer(text):
        if m.group(1):
            ages.append(int(m.group(1)))
        elif m.group(2):
            if 40 <= int(m.group(2)) <= 120:
                ages.append(int(m.group(2)))
        else:
            age = _chinese_number(m.group(3))
            if m.group(4) == "岁" or age >= 40:
                ages.append(age)
    grades = [int(g) if g.isdigit() else _CN_DIGITS[g] for g in _GRADE.findall(text)]
    return {"age": tuple(ages), "grade": tuple(grades)}


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
    clear_margin: float = 12.0  # this far ahead, a long message's few known syllables do
    cross_margin: float = 12.0  # margin needed when the two best are different programmes'
    inferred_margin: float = 0.0  # margin needed when the programme was only inferred (off:
    # on the dev split it turned right answers into lists without removing wrong ones)
    choices_at: float = 30.0
    choices_within: float = 15.0
    off_domain_answer_at: float = 90.0
    max_choices: int = 3
    situation: float = 0.1
    asks: float = 0.0  # the question asks the kind of thing the entry answers
    hardship_answer_at: float = 70.0  # plain hardship naming nothing: answer only above
    long_message: int = 30  # characters (cleaned) from which only the asking part is scored


WEIGHTS_FILE = Path(__file__).with_name("weights.yaml")


def load_tuning(path: Path = WEIGHTS_FILE) -> Tuning:
    """The fitted weights and thresholds (``bench/fit.py`` writes them), or the defaults."""
    if not path.is_file():
        return Tuning()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {f.name: f.type for f in fields(Tuning)}
    return Tuning(**{k: (int(v) if known[k] == "int" else float(v))
                     for k, v in data.items() if k in known})


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
    also: tuple[Candidate, ...] = ()  # a second question in the message, to offer

    @property
    def faq_id(self) -> str | None:
        return self.candidates[0].faq_id if self.band is Band.ANSWER else None

    @property
    def choices(self) -> list[str]:
        return [c.faq_id for c in self.candidates] if self.band is Band.CHOICES else []

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0


@dataclass(frozen=True)
class Reading:
    """A message as the matcher reads it."""

    norm: Normalised  # the whole message
    focus: Normalised  # what is scored: the asking part, with the programmes it implies
    asking: str  # the asking part (cleaned), where referral terms are looked for
    situations: tuple[int, ...]  # the situations whose cues it contains
    hardship: bool  # it tells of plain hardship
    clauses: tuple[str, ...] = ()  # its asking clauses that name something, when 2+
    inferred: bool = False  # programme words were added to the asking part (not named in it)


def _terms_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    unique = sorted({t for t in terms if t}, key=lambda t: (-len(t), t))
    return re.compile("|".join(map(re.escape, unique))) if unique else None


GAP = "…"  # in a situation cue: the parts appear in this order, a few characters apart
GAP_CHARS = 6


def cue_parts(cue: str) -> list[str]:
    """A situation cue's words: one, or several when it has gaps ("父母…去世")."""
    return [part for part in cue.split(GAP) if part.strip()]


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
        hits, weights, sizes, total = [], [], [], 0.0
        for symbol in symbols:
            weight = self.idf.get(symbol, self.unknown_idf)
            total += weight
            rows = self.rows.get(symbol)
            if rows is not None:
                hits.append(rows)
                weights.append(weight)
                sizes.append(len(rows))
        if not hits:
            return np.zeros(self.n_rows), total
        shared = np.bincount(np.concatenate(hits), weights=np.repeat(weights, sizes),
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
        hits, counts = [], []
        for char, wanted in Counter(query).items():
            rows = self.rows.get(char)
            if rows is not None:
                hits.append(rows)
                counts.append(np.minimum(self.counts[char], wanted))
        if not hits:
            return np.zeros(len(self.lengths))
        shared = np.bincount(np.concatenate(hits), weights=np.concatenate(counts),
                             minlength=len(self.lengths))
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
        guidance: Guidance | None = None,
        answer_first: Iterable[Iterable[str]] = (),
        second_when: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.entries = {e.id: e for e in entries}
        guidance = guidance or Guidance()
        # Pairs of entries that answer each other: when the two best are such a
        # pair, the first is answered rather than asking back, or the second when
        # the message has one of its ``second_when`` words (a household's own figures).
        self._answer_first = {frozenset(p): p for p in map(tuple, answer_first)
                              if len(p) == 2}
        self._second_when = {faq_id: tuple(words)
                             for faq_id, words in (second_when or {}).items()}
        programmes = [tuple(group) for group in programmes]
        domain_terms = tuple(domain_terms)
        other_departments = dict(other_departments or {})
        add_words(term for r in guidance.referrals for term in r.terms)
        add_words(part for s in guidance.situations for cue in (*s.cues, *s.means)
                  for part in cue_parts(cue))
        self.tuning = tuning or Tuning()
        for entry in self.entries.values():
            add_words(entry.keywords)
        add_words(domain_terms)
        self.normalise = Normaliser(dictionary)
        clean = self.normalise.clean
        self.normalise.learn(clean(t) for t in (
            *domain_terms, *(name for group in programmes for name in group),
            *other_departments,
            *(term for r in guidance.referrals for term in r.terms),
            *(part for s in guidance.situations for cue in (*s.cues, *s.means)
              for part in cue_parts(cue)),
            *guidance.hardship_cues,
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
        # The same as one matrix (programme x entry), for comparing many entries at once.
        self._programme_matrix = (np.vstack(self._programme_entries) if self._programme_entries
                                  else np.zeros((0, len(self.entry_ids)), dtype=bool))
        self._anchors = ({sound_code(clean(t)) for t in domain_terms if clean(t)}
                         | set(self._keyword_entries)
                         | {code for group in self._programmes for code in group})
        self._anchor_re = _terms_pattern(self._anchors)
        self._read_guidance(guidance, programmes)

    def _read_guidance(self, guidance: Guidance, programmes: list[tuple[str, ...]]) -> None:
        """Situations, hardship and referrals as lookups on cleaned text."""
        clean = self.normalise.clean
        index = {faq_id: i for i, faq_id in enumerate(self.entry_ids)}
        self._situation_of: dict[str, list[int]] = {}
        self._situations = guidance.situations
        self._asks = guidance.asks
        self._situation_offers = []
        gapped: list[str] = []  # one named group per cue with gaps: g<situation>_<n>
        for number, situation in enumerate(guidance.situations):
            for cue in situation.cues:
                parts = [clean(part) for part in cue_parts(cue)]
                if len(parts) > 1 and all(parts):
                    gap = f".{{0,{GAP_CHARS}}}"
                    gapped.append(f"(?P<g{number}_{len(gapped)}>"
                                  f"{gap.join(map(re.escape, parts))})")
                elif len(parts) == 1 and parts[0]:
                    self._situation_of.setdefault(parts[0], []).append(number)
            self._situation_offers.append(
                np.array([index[i] for i in situation.offer if i in index], dtype=np.intp))
        self._situation_gaps = re.compile("|".join(gapped)) if gapped else None
        self._situation_re = _terms_pattern(self._situation_of)
        self._hardship_re = _terms_pattern(clean(c) for c in guidance.hardship_cues)
        self._hardship_offer = np.array(
            [index[i] for i in guidance.hardship_offer if i in index], dtype=np.intp)
        # The office for each referral term (the old intents mapping, then referrals.yaml).
        self._office: dict[str, tuple[str, bool]] = {
            term: (office, False) for term, office in self._other.items()}
        for referral in guidance.referrals:
            for term in referral.terms:
                if clean(term):
                    self._office.setdefault(clean(term), (referral.office, referral.in_bureau))
        self._referral_re = _terms_pattern(self._office)
        passing = {clean(w) for w in guidance.passing}
        self._keeping_re = _terms_pattern(
            clean(name) for group in programmes for name in group
            if clean(name) and not any(clean(g) in passing for g in group))
        self._programme_names = sorted({clean(name) for group in programmes for name in group
                                        if clean(name)}, key=lambda n: (-len(n), n))
        # Who an entry is for, by age or grade: (entry, kind, low, high, keyword codes).
        self._limits = [(index[x.faq_id], x.kind, x.low, x.high,
                         tuple(code for code in self._entry_sounds[index[x.faq_id]]
                               [:len(self.entries[x.faq_id].keywords)] if code))
                        for x in guidance.limits if x.faq_id in index]
        self._second_when = {faq_id: tuple(clean(w) for w in words if clean(w))
                             for faq_id, words in self._second_when.items()}
        # Kinds of question: each cue's sound code, and the entries of each kind.
        self._ask_of: dict[str, list[int]] = {}
        self._ask_entries = []
        for number, ask in enumerate(guidance.asks):
            for cue in ask.cues:
                code = self.normalise(cue).sound
                if code:
                    self._ask_of.setdefault(code, []).append(number)
            self._ask_entries.append(
                np.array([index[i] for i in ask.entries if i in index], dtype=np.intp))
        self._ask_re = _terms_pattern(self._ask_of)

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
        self._longest_keyword = max(map(len, self._keyword_entries), default=0)
        self._ends = np.append(self._starts[1:], len(sounds)) if n else self._starts
        self._prune = len(sounds) > self.PRUNE_ABOVE
        if self._prune:
            self._sound_chars = _CharCounts(sounds)
            self._word_chars = _CharCounts(word_strings)

    def signals(self, norm: Normalised, situations: Iterable[int] = (),
                penalty: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each signal (0..1) for every entry, in ``entry_ids`` order.

        When pruning, ``phrase`` and ``words`` are exact for the entries that can
        rank in the top three (after ``penalty``, points taken off each entry) and
        upper bounds for the rest."""
        n = len(self.entry_ids)
        shared_words, word_mass = self._words.overlap(set(norm.words))
        grams = _grams(norm.sound)
        shared_entry, gram_mass = self._entry_grams.overlap(grams)
        shared_phrase, _ = self._phrase_grams.overlap(grams)
        dice = 2 * shared_phrase / (gram_mass + self._phrase_grams.mass)
        keywords = np.zeros(n)
        for code in self._keywords_in(norm.sound):
            keywords[self._keyword_entries[code]] += 1
        situation = np.zeros(n)
        for number in situations:
            situation[self._situation_offers[number]] = 1.0
        asks = np.zeros(n)
        if self._named_programmes(norm):  # tells one programme's entries apart, only
            for number in self.asks_in(norm.sound):
                asks[self._ask_entries[number]] = 1.0
        signals = {
            "situation": situation,
            "asks": asks,
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
        self._refine(norm, signals, np.zeros(n) if penalty is None else penalty)
        return signals

    def asks_in(self, sound: str) -> set[int]:
        """The kinds of question (``content/asks.yaml``) a sound code asks."""
        if self._ask_re is None:
            return set()
        return {n for m in self._ask_re.finditer(sound) for n in self._ask_of[m.group(0)]}

    def _keywords_in(self, sound: str) -> set[str]:
        """The keyword codes ``sound`` contains (each once), by looking up its
        substrings rather than scanning every keyword."""
        longest = min(self._longest_keyword, len(sound))
        return {sound[i:i + size] for size in range(1, longest + 1)
                for i in range(len(sound) - size + 1)
                if sound[i:i + size] in self._keyword_entries}

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

    def _refine(self, norm: Normalised, signals: dict[str, np.ndarray],
                penalty: np.ndarray) -> None:
        """Replace bounds with exact ratios, best-bounded entries first, until no
        unchecked entry could reach the top three."""
        upper = self._combine(signals, self._named_programmes(norm)) - penalty
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
            exact[chunk] = (self._combine({k: v[chunk] for k, v in signals.items()}, [])
                            - self._penalty(norm, chunk) - penalty[chunk])
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

    def read(self, question: str) -> Reading:
        """The whole message, the part of it to score, and the situations it tells.

        The asking part decides the entry: the programmes a situation stands for
        (or the story names) are added to it only when it names no programme itself
        ("瘫在床上 … 能不能住养老院" is a question about the care home)."""
        norm = self.normalise(question)
        text = norm.text
        situations = sorted(self._situations_in(text))
        hardship = bool(self._hardship_re and self._hardship_re.search(text))
        clauses = self._clauses(question)
        focus = text
        if len(text) > self.tuning.long_message:
            picked = self._asking_part(clauses)
            focus = "".join(clauses[i][0] for i in picked) or text
            clauses = [clauses[i] for i in picked]
        asking = [c for c, asks in clauses if asks and self._names_something(c)]
        focus_text = self._with_implied(focus, text, situations)
        focused = norm if focus_text == text else self.normalise(focus_text)
        return Reading(norm, focused, focus, tuple(situations), hardship,
                       tuple(asking) if len(asking) > 1 else (), focus_text != focus)

    def _with_implied(self, focus: str, text: str, situations: Iterable[int]) -> str:
        """``focus`` and, when it names no programme, the programmes the rest of the
        message names or the situations told in ``focus`` stand for."""
        if any(name in focus for name in self._programme_names):
            return focus
        implied = [name for name in self._programme_names if name in text]
        told = self._situations_in(focus) if situations else set()
        for number in situations:  # told in the asking part itself
            if number in told:
                implied += self._situations[number].means
        return focus + "".join(w for w in dict.fromkeys(implied) if w not in focus)

    def _names_something(self, clause: str) -> bool:
        """Whether a clause names anything of this bureau's (a domain word, a
        keyword, a programme, a situation), not only "这个咋弄"."""
        return bool((self._anchor_re and self._anchor_re.search(sound_code(clause)))
                    or (self._situation_re and self._situation_re.search(clause))
                    or (self._situation_gaps and self._situation_gaps.search(clause)))

    def _situations_in(self, text: str) -> set[int]:
        """The situations (by number) whose cues ``text`` (cleaned) contains."""
        found = ({n for m in self._situation_re.finditer(text)
                  for n in self._situation_of[m.group(0)]} if self._situation_re else set())
        if self._situation_gaps:
            found.update(int(m.lastgroup[1:].split("_")[0])
                         for m in self._situation_gaps.finditer(text) if m.lastgroup)
        return found

    def _clauses(self, question: str) -> list[tuple[str, bool]]:
        """The message's clauses (cleaned, fillers dropped) and whether each asks."""
        parts = _CLAUSE_END.split(question)
        clauses: list[tuple[str, bool]] = []
        for i in range(0, len(parts), 2):
            clause = self.normalise.strip_fillers(self.normalise.clean(parts[i]))
            ends = parts[i + 1] if i + 1 < len(parts) else ""
            if clause:
                clauses.append((clause, "?" in ends or "？" in ends
                                or bool(_ASKING.search(clause))))
        return clauses

    def _asking_part(self, clauses: list[tuple[str, bool]]) -> list[int]:
        """Which clauses of a long message ask something (the last two), or its
        last clause; none when it has no clauses to choose from. When they name
        nothing ("这个咋弄"), the clause before them is what they ask about."""
        if len(clauses) < 2:
            return []
        picked = [i for i, (_, asks) in enumerate(clauses) if asks][-2:] or [len(clauses) - 1]
        if not any(self._names_something(clauses[i][0]) for i in picked) and picked[0] > 0:
            picked.insert(0, picked[0] - 1)
        return picked

    def _limited(self, text: str) -> np.ndarray:
        """Points off the entries a number in ``text`` rules out (an age, a grade)."""
        penalty = np.zeros(len(self.entry_ids))
        if not self._limits:
            return penalty
        found = numbers_in(text)
        if not found["age"] and not found["grade"]:
            return penalty
        sound = ""
        for entry, kind, low, high, keywords in self._limits:
            values = found[kind]
            if values and all(v < low or v > high for v in values):
                sound = sound or sound_code(text)
                if not any(code in sound for code in keywords):
                    penalty[entry] += self.tuning.programme_penalty
        return penalty

    def _score(self, focus: Normalised, situations: Iterable[int], penalty: np.ndarray,
               ) -> tuple[np.ndarray, dict[str, np.ndarray], list[int]]:
        """Every entry's score for ``focus``, its signals and the programmes it names."""
        signals = self.signals(focus, situations, penalty)
        named = self._named_programmes(focus)
        return self._combine(signals, named) - penalty, signals, named

    def _confident(self, combined: np.ndarray, signals: dict[str, np.ndarray],
                   answer_at: float, inferred: bool = False) -> int | None:
        """The entry to answer with, when one is clearly ahead: further ahead when
        the two best are different programmes' or the programme was only inferred
        (from a situation or the story), since a wrong programme is the worst answer."""
        t = self.tuning
        order = np.argsort(-combined, kind="stable")[:2]
        top = combined[order[0]]
        margin = top - (combined[order[1]] if len(order) > 1 else 0.0)
        if len(order) > 1 and not self._same_programme(int(order[0]), int(order[1])):
            wanted = max(t.answer_margin, t.cross_margin)  # a wrong programme is the worst
        else:
            wanted = t.answer_margin
        if inferred:
            wanted = max(wanted, t.inferred_margin)
        if not (top >= answer_at and margin >= wanted
                and (signals["grams"][order[0]] >= t.answer_min_grams
                     or margin >= t.clear_margin)):
            return None
        best = int(order[0])
        asks = signals.get("asks")
        if t.asks and asks is not None and asks[best]:
            # The kind of question tells apart one programme's entries, never two
            # programmes: against every other programme's entry the lead must hold
            # without it.
            plain = combined - 100.0 * t.asks * asks
            others = ~self._programme_peers(best)
            if others.any() and plain[best] - plain[others].max() < max(t.answer_margin,
                                                                       t.cross_margin):
                return None
        return best

    def _programme_peers(self, entry: int) -> np.ndarray:
        """Which entries share a programme with ``entry`` (or, like it, name none)."""
        matrix = self._programme_matrix
        own = matrix[:, entry]
        if own.any():
            return matrix[own].any(axis=0)
        return ~matrix.any(axis=0)

    def _same_programme(self, a: int, b: int) -> bool:
        """Whether two entries share a programme (or neither names one)."""
        first = {g for g, entries in enumerate(self._programme_entries) if entries[a]}
        second = {g for g, entries in enumerate(self._programme_entries) if entries[b]}
        return bool(first & second) or not (first or second)

    def match(self, question: str) -> Match:
        """Score a question and decide its band."""
        reading = self.read(question)
        norm, focus = reading.norm, reading.focus
        t = self.tuning
        if not self.entry_ids or not norm.sound:
            return Match(Band.UNKNOWN, (), norm)
        penalty = self._limited(norm.text)
        combined, signals, named = self._score(focus, reading.situations, penalty)
        order = np.argsort(-combined, kind="stable")[: max(t.max_choices, 2)]
        candidates = tuple(
            Candidate(self.entry_ids[i], round(float(combined[i]), 1)) for i in order)
        top, second = candidates[0].score, candidates[1].score if len(candidates) > 1 else 0.0
        referral = self._referral(reading.asking)
        if referral:
            office, in_bureau = referral
            return Match(Band.UNKNOWN, candidates, norm, referral=office,
                         reason="in_bureau" if in_bureau else "referral")
        in_domain = (bool(self._anchor_re and self._anchor_re.search(norm.sound))
                     or bool(reading.situations) or reading.hardship)
        answer_at = t.answer_at if in_domain else t.off_domain_answer_at
        if reading.hardship and not reading.situations and not named:
            answer_at = max(answer_at, t.hardship_answer_at)  # a told hardship, no more
        best = self._confident(combined, signals, answer_at, reading.inferred)
        compares = len(named) > 1 and all(self._programme_entries[g][order[0]] for g in named)
        if in_domain and reading.clauses and not compares:
            # (one entry about every programme named answers "啥样的人吃五保 啥样的人吃低保")
            two = self._two_questions(reading, penalty, answer_at, candidates)
            if two is not None:
                return two
        if best is not None:
            return Match(Band.ANSWER, candidates[:1], norm)
        pair = self._answer_first.get(frozenset(c.faq_id for c in candidates[:2]))
        if in_domain and pair and top >= t.answer_at and top - second < t.answer_margin:
            first = pair[0]
            if any(w in norm.text for w in self._second_when.get(pair[1], ())):
                first = pair[1]
            chosen = next(c for c in candidates if c.faq_id == first)
            return Match(Band.ANSWER, (chosen,), norm, reason="answer_first")
        plain_hardship = reading.hardship and not reading.situations and not named
        if in_domain and top >= t.choices_at and not plain_hardship:
            close = tuple(c for c in candidates[: t.max_choices]
                          if c.score >= t.choices_at and top - c.score <= t.choices_within)
            return Match(Band.CHOICES, close, norm)
        offer = self._offer(reading, combined)
        if offer:
            return Match(Band.CHOICES, offer, norm, reason="hardship")
        return Match(Band.UNKNOWN, candidates, norm,
                     reason=None if in_domain else "off_domain")

    def _two_questions(self, reading: Reading, penalty: np.ndarray, answer_at: float,
                       candidates: tuple[Candidate, ...]) -> Match | None:
        """A message with two asking clauses that each name something: each clause
        is scored on its own. Two clear and different winners: the first is answered
        and the second offered. Otherwise, when the whole message's best is neither
        clause's best, it is not answered: the clauses' bests are offered."""
        text = reading.norm.text
        bests: list[Candidate] = []
        confident: list[Candidate] = []
        for clause in reading.clauses[:2]:
            focus = self.normalise(self._with_implied(clause, text, reading.situations))
            if not focus.sound:
                continue
            combined, signals, _ = self._score(focus, reading.situations, penalty)
            best = int(np.argmax(combined))
            candidate = Candidate(self.entry_ids[best], round(float(combined[best]), 1))
            bests.append(candidate)
            if self._confident(combined, signals, answer_at) == best:
                confident.append(candidate)
        if len(confident) == 2 and confident[0].faq_id != confident[1].faq_id:
            return Match(Band.ANSWER, confident[:1], reading.norm, reason="two_questions",
                         also=confident[1:])
        ids = {c.faq_id for c in bests}
        if len(ids) == 2 and candidates[0].faq_id not in ids:
            unique = tuple({c.faq_id: c for c in (*bests, candidates[0])}.values())
            return Match(Band.CHOICES, unique[: self.tuning.max_choices], reading.norm,
                         reason="two_questions")
        return None

    def _offer(self, reading: Reading, combined: np.ndarray) -> tuple[Candidate, ...]:
        """For a message that tells a situation or plain hardship but fits no entry:
        the likely programmes, best scored first (at most ``max_choices``)."""
        if reading.situations:
            ids = np.unique(np.concatenate([self._situation_offers[n]
                                            for n in reading.situations]))
        elif reading.hardship:
            ids = self._hardship_offer
        else:
            return ()
        if not len(ids):
            return ()
        best = ids[np.argsort(-combined[ids], kind="stable")][: self.tuning.max_choices]
        return tuple(Candidate(self.entry_ids[i], round(float(combined[i]), 1)) for i in best)

    def _referral(self, text: str) -> tuple[str, bool] | None:
        """The office to ask, when the last thing ``text`` names is another office's
        business (or the bureau's own outside this FAQ), not one of its programmes."""
        if self._referral_re is None:
            return None
        found = [(m.end(), m.group(0)) for m in self._referral_re.finditer(text)]
        if not found:
            return None
        end, term = found[-1]
        if self._keeping_re is not None:
            keeping = [m.end() for m in self._keeping_re.finditer(text)]
            if keeping and keeping[-1] > end:
                return None
        return self._office[term]
