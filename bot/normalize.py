"""Turn a raw question into the comparable forms the matcher scores.

Steps: NFKC (full width to half width), traditional to simplified (OpenCC),
lower case, typed toneless pinyin read as the syllables it spells ("dibao
zenme shenqing" -> 低保怎么申请: each run of letters is split into syllables,
and the syllables into the words this FAQ uses, see :meth:`Normaliser.learn`),
drop punctuation, emoji and spaces, apply the colloquial/typo dictionary, drop
filler words. Then two codings that make typos harmless: each syllable's pinyin
(so homophones typed by pinyin input coincide) and the jieba word sequence.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jieba
import opencc
from pypinyin import Style, lazy_pinyin

from content.schema import Dictionary

jieba.setLogLevel(logging.WARNING)
_t2s = opencc.OpenCC("t2s")
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_HAN = re.compile(r"[\u3400-\u9fff]")
# Pinyin-input and dialect confusions that make different syllables sound alike.
_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"), ("f", "h"), ("r", "l"))
_FUZZY_FINALS = (("ing", "in"), ("eng", "en"), ("iang", "ian"), ("uang", "uan"))
_LATIN_RUN = re.compile(r"[a-z]+(?:[\s'’-]+[a-z]+)*")
_LATIN_TOKEN = re.compile(r"[a-z]+")
_LONGEST_SYLLABLE = 6  # zhuang, chuang, shuang
_LONGEST_WORD = 6  # syllables in one lexicon word
_PUA_SYLLABLES = 0xF0000  # supplementary private use area: never in real text
_PUA_WORDS = 0x100000


def fuzzy_syllable(syllable: str) -> str:
    """Fold a toneless pinyin syllable onto its sound-alike class."""
    for full, short in _FUZZY_INITIALS:
        if syllable.startswith(full):
            syllable = short + syllable[len(full):]
            break
    for full, short in _FUZZY_FINALS:
        if syllable.endswith(full):
            return syllable[: -len(full)] + short
    return syllable


class _Codebook:
    """Gives each distinct symbol (a syllable, a word) one private-use character."""

    def __init__(self, base: int) -> None:
        self._base = base
        self._codes: dict[str, str] = {}
        self._lock = threading.Lock()  # content reloads run in a worker thread

    def code(self, symbol: str) -> str:
        found = self._codes.get(symbol)
        if found is None:
            with self._lock:
                found = self._codes.get(symbol)
                if found is None:
                    found = self._codes[symbol] = chr(self._base + len(self._codes))
        return found


_syllables = _Codebook(_PUA_SYLLABLES)
_words = _Codebook(_PUA_WORDS)


@lru_cache(maxsize=65536)
def sound_code(text: str) -> str:
    """One character per syllable, equal for homophones (低包 == 低保 == 底保).

    Cached: codes only ever grow, so a cached result stays valid."""
    out = []
    for chunk in lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: list(s)):
        if chunk and chunk.isascii() and chunk.isalpha() and len(chunk) > 1:
            out.append(_syllables.code(fuzzy_syllable(chunk)))
        else:
            out.append(chunk)
    return "".join(out)


def _read_syllables() -> dict[str, str]:
    """Every toneless pinyin syllable and its commonest character (bot/syllables.txt)."""
    table = {}
    text = Path(__file__).with_name("syllables.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            syllable, char = line.split()
            table[syllable] = char
    return table


_SYLLABLE_CHAR = _read_syllables()


@lru_cache(maxsize=4096)
def split_syllables(token: str) -> tuple[str, ...] | None:
    """A run of letters as the fewest pinyin syllables that spell it, or None when
    it is not pinyin (an English word, initials such as "ykt")."""
    n = len(token)
    best: list[tuple[str, ...] | None] = [()] + [None] * n
    for end in range(1, n + 1):
        for start in range(max(0, end - _LONGEST_SYLLABLE), end):
            before, now = best[start], best[end]
            if (before is not None and token[start:end] in _SYLLABLE_CHAR
                    and (now is None or len(before) + 1 < len(now))):
                best[end] = (*before, token[start:end])
    return best[n]


_DOMAIN_FREQ = 200000


def add_words(words: Iterable[str]) -> None:
    """Teach jieba domain words (低保金, 一卡通, 护理补贴 …) so they stay whole.

    Only words jieba does not already rate this high are added: every add_word
    raises jieba's total frequency, so adding the same words again on each content
    reload would slowly change how everything else is segmented."""
    jieba.dt.check_initialized()
    for word in words:
        if word and _HAN.search(word) and jieba.dt.FREQ.get(word, 0) < _DOMAIN_FREQ:
            jieba.add_word(word, freq=_DOMAIN_FREQ)


def words(text: str) -> list[str]:
    """jieba's segmentation of an already normalised text."""
    return [w for w in jieba.lcut(text, HMM=False) if w.strip()]


def word_code(word_list: Iterable[str]) -> str:
    """One character per word, words compared by sound."""
    return "".join(_words.code(sound_code(w)) for w in word_list)


@dataclass(frozen=True)
class Normalised:
    """A question in every form the matcher uses."""

    text: str  # cleaned, dictionary applied, fillers removed
    sound: str  # sound_code(text)
    words: tuple[str, ...]  # sound codes of each jieba word
    word_string: str  # word_code(...)
    tokens: tuple[str, ...] = ()  # the jieba words themselves


class Normaliser:
    """Cleans questions with one county's dictionary."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary
        replacements = {_clean(k): _clean(v) for k, v in dictionary.replacements.items()}
        replacements = {k: v for k, v in replacements.items() if k and k != v}
        self._replacements = replacements
        self._replace_re = _alternation(replacements)
        self._filler_re = _alternation(_clean(f) for f in dictionary.fillers)
        self._lexicon: dict[str, str] = {}  # sound code -> word, for reading pinyin
        self._chars: dict[str, Counter[str]] = {}
        add_words(replacements.values())
        self.learn([*replacements.values(), *replacements])

    def learn(self, words: Iterable[str]) -> None:
        """Words (2 to 6 characters) that typed pinyin is read as: "dibao" becomes
        低保 once 低保 is learned. Syllables that start no learned word are
        written as their commonest character, which sounds the same."""
        for word in words:
            if len(word) <= _LONGEST_WORD and _HAN.search(word):
                code = sound_code(word)
                if len(code) != len(word):
                    continue
                if len(word) > 1:
                    self._lexicon.setdefault(code, word)
                else:  # the character this FAQ uses most for that sound
                    counts = self._chars.setdefault(code, Counter())
                    counts[word] += 1
                    if counts[word] >= counts[self._lexicon.get(code, word)]:
                        self._lexicon[code] = word

    def read_pinyin(self, run: str) -> str:
        """One run of letters (spaces allowed inside) as Chinese characters, when
        every part of it is pinyin; otherwise the run as it was."""
        syllables: list[str] = []
        for token in _LATIN_TOKEN.findall(run):
            split = split_syllables(token)
            if split is None:
                return run
            syllables += split
        codes = [_syllables.code(fuzzy_syllable(s)) for s in syllables]
        n = len(codes)
        # best[i]: (weight, text) for the first i syllables; a learned word of k
        # syllables weighs k * k, a lone syllable 1, so whole words win.
        best: list[tuple[int, str]] = [(0, "")] * (n + 1)
        for end in range(1, n + 1):
            weight, text = best[end - 1]
            char = self._lexicon.get(codes[end - 1]) or _SYLLABLE_CHAR[syllables[end - 1]]
            best[end] = (weight + 1, text + char)
            for start in range(max(0, end - _LONGEST_WORD), end - 1):
                word = self._lexicon.get("".join(codes[start:end]))
                if word is not None:
                    weight = best[start][0] + (end - start) ** 2
                    if weight > best[end][0]:
                        best[end] = (weight, best[start][1] + word)
        return best[n][1]

    def clean(self, raw: str) -> str:
        """Width, script, case, pinyin, punctuation and dictionary, keeping filler words."""
        text = _clean(raw, self.read_pinyin)
        if self._replace_re is not None:
            text = self._replace_re.sub(lambda m: self._replacements[m.group(0)], text)
        return text

    def strip_fillers(self, text: str) -> str:
        """Drop filler words; a question made only of fillers is kept as it was."""
        if self._filler_re is None:
            return text
        stripped = self._filler_re.sub("", text)
        return stripped or text

    def __call__(self, raw: str) -> Normalised:
        text = self.strip_fillers(self.clean(raw))
        segmented = words(text)
        sounds = tuple(sound_code(w) for w in segmented)
        return Normalised(
            text=text,
            sound="".join(sounds),
            words=sounds,
            word_string="".join(_words.code(s) for s in sounds),
            tokens=tuple(segmented),
        )


def _clean(raw: str, read_pinyin: Callable[[str], str] | None = None) -> str:
    text = unicodedata.normalize("NFKC", raw)
    text = _t2s.convert(text).lower()
    if read_pinyin is not None and _LATIN_TOKEN.search(text):
        text = _LATIN_RUN.sub(lambda m: read_pinyin(m.group(0)), text)
    return _NOT_WORD.sub("", text)


def _alternation(terms: Iterable[str]) -> re.Pattern[str] | None:
    unique = sorted({t for t in terms if t}, key=lambda t: (-len(t), t))
    if not unique:
        return None
    return re.compile("|".join(re.escape(t) for t in unique))
