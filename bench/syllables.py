"""Write ``bot/syllables.txt``: every toneless pinyin syllable and the commonest
character that reads so (``python -m bench.syllables``).

The normaliser reads typed pinyin ("dibao zenme shenqing") by splitting it into
these syllables; a syllable that starts no known word is written as its character.
Built from pypinyin's reading table, ranked by jieba's character frequencies.
"""

from __future__ import annotations

from pathlib import Path

import jieba
from pypinyin.constants import PINYIN_DICT
from pypinyin.contrib.tone_convert import to_normal

OUT = Path(__file__).resolve().parent.parent / "bot" / "syllables.txt"
_NOT_SYLLABLES = {"m", "n", "ng", "hm", "hng", "ê"}


def main() -> int:
    jieba.initialize()
    freq = jieba.dt.FREQ
    best: dict[str, tuple[str, int]] = {}
    for point, readings in PINYIN_DICT.items():
        if not 0x4E00 <= point <= 0x9FFF:
            continue
        char = chr(point)
        for i, reading in enumerate(readings.split(",")):
            syllable = to_normal(reading)
            if not syllable.isascii() or not syllable.isalpha() or syllable in _NOT_SYLLABLES:
                continue
            weight = freq.get(char, 0) if i == 0 else 0
            if syllable not in best or weight > best[syllable][1]:
                best[syllable] = (char, weight)
    lines = [f"{s} {c}" for s, (c, _) in sorted(best.items())]
    OUT.write_text("# toneless pinyin syllable, commonest character (bench/syllables.py)\n"
                   + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} syllables -> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
