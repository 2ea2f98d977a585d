"""Accuracy of the bot's answers on a question file: ``python -m bench.accuracy [FILE ...]``.

Each FILE is JSON lines ``{"q", "id", "kind", "also"?}``: ``id`` is the catalogue id
that answers the question (null for an off-topic one) and ``also`` a second acceptable
id (two questions in one message). Every question goes through the bot's own path
(:func:`bot.dialog.understand`: intents, then the matcher, built as the bot builds it
from the shipped content) and lands in one of four outcomes: a confident answer, a
numbered "did you mean" list, or a decline (an honest "I don't know", a referral to
another office, or a greeting/thanks/menu reply).

Scoring (as in ``tests/bot/test_matcher.py``): an in-scope question scores 1 for the
right answer, ½ when the right entry is in the list, 0 otherwise; an off-topic question
scores 1 when declined and 0 otherwise (a list or a confident answer). A confident
answer to an off-topic question, or to an in-scope one with the wrong entry, is a
"wrong" answer: the worst outcome.

``--misses`` prints every question that did not score 1 (use it on the dev split only).
Default file: ``tests/data/blind/test.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import table
from bot.dialog import Snapshot, understand
from bot.matcher import Band, Match
from content import CONTENT_DIR
from content.guide import Guide
from content.load import load_content_files, load_county
from content.queries import PublishedContent

ROOT = Path(__file__).resolve().parent.parent
BLIND = ROOT / "tests" / "data" / "blind"
DEFAULT_FILES = (BLIND / "test.jsonl",)
IN_SCOPE, OFF_TOPIC = "in scope", "off-topic"


@dataclass(frozen=True)
class Outcome:
    """What happened to one question."""

    kind: str
    in_scope: bool
    result: str  # right | in_list | declined | wrong  (off-topic: declined | list | wrong)
    points: float
    shown: str  # the bot's verdict, for --misses


def read_questions(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (blank lines skipped)."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def bot_reader() -> Callable[[str], str | Match]:
    """The bot's reading of a question, built from the shipped content as the bot does."""
    files = load_content_files()
    guide = Guide.load()
    county = load_county(CONTENT_DIR / "county.yaml")
    content = PublishedContent(tuple(files.entries), files.dictionary, 1)
    snapshot = Snapshot.build(content, county, guide)
    return lambda question: understand(question, snapshot, guide)


def outcome(item: dict[str, Any], verdict: str | Match) -> Outcome:
    """Score one question's verdict."""
    wanted = {i for i in (item.get("id"), item.get("also")) if i}
    kind = str(item.get("kind") or "-")
    if isinstance(verdict, str):
        band, answer, choices, shown = Band.UNKNOWN, None, [], f"intent {verdict}"
    else:
        band, answer, choices = verdict.band, verdict.faq_id, verdict.choices
        shown = {Band.ANSWER: f"answer {answer}", Band.CHOICES: f"choices {choices}",
                 Band.UNKNOWN: f"declined{' → ' + verdict.referral if verdict.referral else ''}"
                 }[band]
        if verdict.reason:
            shown += f" ({verdict.reason})"
    if not wanted:
        result = {Band.ANSWER: "wrong", Band.CHOICES: "list", Band.UNKNOWN: "declined"}[band]
        return Outcome(kind, False, result, float(result == "declined"), shown)
    if band is Band.ANSWER:
        result = "right" if answer in wanted else "wrong"
    elif band is Band.CHOICES and wanted & set(choices):
        result = "in_list"
    else:
        result = "declined"
    points = {"right": 1.0, "in_list": 0.5}.get(result, 0.0)
    return Outcome(kind, True, result, points, shown)


def evaluate(items: Iterable[dict[str, Any]],
             read: Callable[[str], str | Match]) -> list[Outcome]:
    return [outcome(item, read(str(item["q"]))) for item in items]


def summary(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    """Per kind and for all in-scope / all off-topic questions: n, score (0..1) and
    the count of each result."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.kind, []).append(o)
        groups.setdefault(IN_SCOPE if o.in_scope else OFF_TOPIC, []).append(o)
    out: dict[str, dict[str, float]] = {}
    for name, group in groups.items():
        counts = Counter(o.result for o in group)
        out[name] = {"n": len(group), "score": sum(o.points for o in group) / len(group),
                     "in_scope": float(group[0].in_scope), **counts}
    return out


def print_table(title: str, figures: dict[str, dict[str, float]]) -> None:
    def order(name: str) -> tuple[int, str]:
        row = figures[name]
        total = name in (IN_SCOPE, OFF_TOPIC)
        return (0 if row["in_scope"] else 2) + total, name

    rows = []
    for name in sorted(figures, key=order):
        f = figures[name]
        n = int(f["n"])
        if f["in_scope"]:
            rows.append([name, n, f"{f['score']:.3f}", f"{100 * f.get('right', 0) / n:.0f}%",
                         int(f.get("right", 0)), int(f.get("in_list", 0)),
                         int(f.get("declined", 0)), int(f.get("wrong", 0))])
        else:
            rows.append([name, n, f"{f['score']:.3f}", "-", "-", int(f.get("list", 0)),
                         int(f.get("declined", 0)), int(f.get("wrong", 0))])
    print(f"== {title} ==")
    print(table(["kind", "n", "score", "answered right", "right", "in list / list",
                 "declined", "wrong (confident)"], rows))
    off = figures.get(OFF_TOPIC)
    if off:
        per40 = 40 * off.get("wrong", 0) / off["n"]
        print(f"off-topic answered confidently: {int(off.get('wrong', 0))} of {int(off['n'])} "
              f"({per40:.1f} per 40)")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, default=list(DEFAULT_FILES))
    parser.add_argument("--misses", action="store_true",
                        help="print every question that did not score 1")
    args = parser.parse_args(argv)
    read = bot_reader()
    for path in args.files:
        items = read_questions(path)
        outcomes = evaluate(items, read)
        print_table(str(path), summary(outcomes))
        if args.misses:
            for item, o in zip(items, outcomes, strict=True):
                if o.points < 1:
                    want = item.get("id") or "-"
                    if item.get("also"):
                        want += "/" + item["also"]
                    print(f"[{o.kind}] {o.result}: want {want}, got {o.shown}: {item['q']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
