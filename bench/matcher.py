"""Matcher accuracy and speed: ``python -m bench.matcher``.

(a) Accuracy of the shipped FAQ on ``tests/data/devset.yaml`` and
``tests/data/holdout.yaml``: in-scope score (1 for a confident right answer,
0.5 when the right entry is among the "did you mean" choices), the share of
off-topic questions declined, wrong confident answers, and band counts.

(b) Throughput of :meth:`bot.matcher.Matcher.match` on the shipped FAQ and on a
synthetic FAQ (``bench.synthetic``), with the matcher's build time and the
per-question latency. Matchers are built exactly as the bot builds them.

The questions timed are the dev and holdout questions plus long messages (a
story of 60-150 characters with the question inside) made from them; the long
ones are also timed alone. Prints figures only; nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.report import table
from bench.synthetic import synthetic_faq
from bot.dialog import matcher_for
from bot.matcher import Band, Matcher
from content.guide import Guide
from content.load import ContentFiles, load_content_files
from content.queries import PublishedContent
from content.schema import FaqEntry

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SETS = ("devset", "holdout")
TARGET_QPS = 1000.0  # on the 1000-entry FAQ
TARGET_P99_MS = 5.0  # per question, long messages included
MIN_CALLS = 3000


def load_set(name: str) -> list[dict[str, Any]]:
    with (DATA / f"{name}.yaml").open(encoding="utf-8") as fh:
        return [{"q": str(item["q"]), "expect": item.get("expect")} for item in yaml.safe_load(fh)]


def build_matcher(guide: Guide, entries: Sequence[FaqEntry], files: ContentFiles,
                  ) -> tuple[Matcher, float]:
    """The matcher as the bot builds it, and how long that took (seconds)."""
    content = PublishedContent(tuple(("bench.yaml", e) for e in entries), files.dictionary, 1)
    started = time.perf_counter()
    matcher = matcher_for(guide, content)
    return matcher, time.perf_counter() - started


# ----- accuracy ---------------------------------------------------------------
def accuracy(matcher: Matcher, items: list[dict[str, Any]]) -> dict[str, Any]:
    r: dict[str, Any] = Counter()
    bands: Counter[str] = Counter()
    for item in items:
        match = matcher.match(item["q"])
        bands[match.band.value] += 1
        expect = item["expect"]
        if expect is None:
            r["off"] += 1
            if match.band is Band.UNKNOWN:
                r["declined"] += 1
            elif match.band is Band.ANSWER:
                r["off_answered"] += 1
            else:
                r["off_choices"] += 1
            continue
        r["in"] += 1
        if match.band is Band.ANSWER:
            if match.faq_id == expect:
                r["right"] += 1
            else:
                r["wrong"] += 1
        elif match.band is Band.CHOICES and expect in match.choices:
            r["choice_hit"] += 1
        else:
            r["missed"] += 1
    r["score"] = r["right"] + 0.5 * r["choice_hit"]
    r["wrong_confident"] = r["wrong"] + r["off_answered"]
    return {"counts": r, "bands": bands}


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def report_accuracy(matcher: Matcher) -> None:
    print("== (a) accuracy, shipped FAQ ==")
    results = {name: accuracy(matcher, load_set(name)) for name in SETS}
    in_rows, off_rows = [], []
    for name, result in results.items():
        c, b = result["counts"], result["bands"]
        in_rows.append([name, c["in"], f"{c['score']:g}", _pct(c["score"], c["in"]),
                        c["right"], c["choice_hit"], c["wrong"], c["missed"]])
        off_rows.append([name, c["off"], c["declined"], _pct(c["declined"], c["off"]),
                         c["off_choices"], c["off_answered"], c["wrong_confident"],
                         b["answer"], b["choices"], b["unknown"]])
    print(table(["set", "in-scope", "score", "score%", "right answer", "right in choices",
                 "wrong answer", "missed"], in_rows))
    print()
    print(table(["set", "off-topic", "declined", "declined%", "offered choices",
                 "answered", "wrong confident (all)", "band answer", "band choices",
                 "band unknown"], off_rows))
    print()
    for name, result in results.items():
        c = result["counts"]
        print(f"{name}: in-scope score {c['score']:g}/{c['in']} ({_pct(c['score'], c['in'])})")
        print(f"{name}: off-topic declined {c['declined']}/{c['off']} "
              f"({_pct(c['declined'], c['off'])})")
        print(f"{name}: wrong confident answers {c['wrong_confident']} "
              f"({c['wrong']} in-scope to the wrong entry, {c['off_answered']} off-topic)")
        b = result["bands"]
        print(f"{name}: bands answer {b['answer']}, choices {b['choices']}, "
              f"unknown {b['unknown']}")
    print()


# ----- throughput -------------------------------------------------------------
def throughput(matcher: Matcher, questions: list[str], min_calls: int) -> dict[str, float]:
    """Time ``match`` over ``questions`` repeated to at least ``min_calls`` calls."""
    for question in questions:  # warm caches (pinyin, codebooks) once
        matcher.match(question)
    repeats = -(-min_calls // len(questions))
    calls = questions * repeats
    latencies = []
    gc.collect()
    clock = time.perf_counter_ns
    started = clock()
    for question in calls:
        t0 = clock()
        matcher.match(question)
        latencies.append(clock() - t0)
    elapsed = (clock() - started) / 1e9
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"calls": len(calls), "seconds": elapsed, "qps": len(calls) / elapsed,
            "p50": cuts[49] / 1e6, "p99": cuts[98] / 1e6,
            "mean": statistics.fmean(latencies) / 1e6}


# Story sentences put before a question to make the long messages (60-150
# characters) real users send; written for the bench, not taken from any test set.
_STORY = (
    "俺今年七十多了，老伴前年走了，儿子在外地打工，一年回来一趟，家里就俺一个人种着三亩地。",
    "我家三口人，孩子他爸去年干活摔伤了腰，干不了重活，家里就靠我打点零工，日子紧巴巴的。",
    "我爸妈都在乡下，年纪大了身体不好，我在外地上班顾不上，村里人说的政策我也听不太懂。",
    "前两天听庄上的人说起这个事，说法都不一样，有的说能办有的说不能办，俺心里没底。",
)


def long_messages(questions: list[str], limit: int = 200) -> list[str]:
    """Questions with a story before them, 60-150 characters each."""
    out = []
    for i, question in enumerate(questions):
        story = _STORY[i % len(_STORY)]
        if i % 3 == 0:
            story += _STORY[(i + 1) % len(_STORY)]
        text = (story + question)[:150]
        if len(text) >= 60:
            out.append(text)
        if len(out) >= limit:
            break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1000,
                        help="size of the synthetic FAQ (default 1000)")
    parser.add_argument("--calls", type=int, default=MIN_CALLS,
                        help=f"minimum match calls per FAQ (default {MIN_CALLS})")
    args = parser.parse_args(argv)

    import jieba

    started = time.perf_counter()
    jieba.initialize()  # once per process; not part of any matcher build below
    jieba_seconds = time.perf_counter() - started
    files = load_content_files()
    guide = Guide.load()
    shipped = [entry for _, entry in files.entries]
    matcher, shipped_build = build_matcher(guide, shipped, files)

    report_accuracy(matcher)

    print(f"== (b) throughput: Matcher.match, one thread, >= {args.calls} calls per FAQ ==")
    questions = [item["q"] for name in SETS for item in load_set(name)]
    long = long_messages(questions)
    mixed = questions + long
    runs = [("shipped", shipped, shipped_build, throughput(matcher, mixed, args.calls),
             None),
            ("shipped, long only", shipped, shipped_build,
             throughput(matcher, long, args.calls // 3), None)]
    del matcher
    synthetic = synthetic_faq(args.entries)
    big, big_build = build_matcher(guide, synthetic, files)
    runs.append((f"synthetic-{args.entries}", synthetic, big_build,
                 throughput(big, mixed, args.calls), TARGET_QPS))
    runs.append((f"synthetic-{args.entries}, long only", synthetic, big_build,
                 throughput(big, long, args.calls // 3), None))
    rows = []
    for name, entries, build, t, target in runs:
        verdict = "-" if target is None else (
            f">= {target:g}: {'met' if t['qps'] >= target else 'MISSED'}")
        rows.append([name, len(entries), sum(1 + len(e.alternatives) for e in entries),
                     f"{build:.2f}", t["calls"], f"{t['qps']:.0f}", f"{t['mean']:.2f}",
                     f"{t['p50']:.2f}", f"{t['p99']:.2f}", verdict])
    print(table(["FAQ", "entries", "phrasings", "build s", "calls", "q/s", "mean ms",
                 "p50 ms", "p99 ms", "target q/s"], rows))
    print(f"(jieba dictionary load, once per process before any build: {jieba_seconds:.2f} s; "
          f"{len(questions)} distinct dev+holdout questions and {len(long)} long messages "
          f"of 60-150 characters made from them; target p99 <= {TARGET_P99_MS:g} ms)")
    print()
    for name, entries, build, t, target in runs:
        line = (f"{name} ({len(entries)} entries): {t['qps']:.0f} questions/s, "
                f"p50 {t['p50']:.2f} ms, p99 {t['p99']:.2f} ms, matcher built in {build:.2f} s")
        if target is not None:
            line += (f"; target >= {target:g} q/s "
                     f"{'met' if t['qps'] >= target else 'MISSED'}")
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
