"""Fit the matcher's weights and thresholds: ``python -m bench.fit [--write]``.

1. Weights: a logistic regression over (question, entry) pairs of the in-scope
   questions of the dev split (``tests/data/blind/dev.jsonl``) and
   ``tests/data/devset.yaml``: is this entry the right one, from the signals the
   matcher computes (phrase, words, cover, grams, dice, keyword, situation) and the
   number of programmes the question names that the entry never mentions. The
   weights are scaled so the five text signals sum to 1.5 (the scale the
   thresholds have always had).
2. Thresholds: a grid search on the same questions, off-topic included, for the
   highest utility: 1 for a right answer or a declined off-topic question, ½ for the
   right entry in a list, −1 for a confident wrong answer (worse than "I don't know").

Deterministic (fixed seed, full-batch gradient descent). ``--write`` stores the
result in ``bot/weights.yaml``, which :func:`bot.matcher.load_tuning` reads.
The test split is never read here.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import yaml

from bench.accuracy import BLIND, outcome, read_questions
from bench.matcher import load_set
from bot.dialog import Snapshot, understand
from bot.matcher import WEIGHTS_FILE, Tuning, load_tuning
from content import CONTENT_DIR
from content.guide import Guide
from content.load import load_content_files, load_county
from content.queries import PublishedContent

SEED = 20261
FEATURES = ("phrase", "words", "cover", "grams", "dice", "keyword", "situation", "asks")
TEXT_SIGNALS = ("phrase", "words", "cover", "grams", "dice")
SCALE = 1.5


def questions() -> list[dict[str, Any]]:
    dev = read_questions(BLIND / "dev.jsonl")
    old = [{"q": i["q"], "id": i["expect"], "kind": "devset"} for i in load_set("devset")]
    return dev + old


def snapshot_and_guide(tuning: Tuning | None = None) -> tuple[Snapshot, Guide]:
    files = load_content_files()
    guide = Guide.load()
    county = load_county(CONTENT_DIR / "county.yaml")
    snapshot = Snapshot.build(PublishedContent(tuple(files.entries), files.dictionary, 1),
                              county, guide)
    if tuning is not None:
        snapshot.matcher.tuning = tuning
    return snapshot, guide


def pairs(snapshot: Snapshot, items: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """One row of features per (in-scope question, entry), and whether it is right."""
    matcher = snapshot.matcher
    rows, labels = [], []
    every = np.arange(len(matcher.entry_ids))
    for item in items:
        wanted = {i for i in (item.get("id"), item.get("also")) if i}
        if not wanted:
            continue
        reading = matcher.read(item["q"])
        if not reading.norm.sound:
            continue
        signals = matcher.signals(reading.focus, reading.situations)
        penalised = matcher._penalty(reading.focus, every) / matcher.tuning.programme_penalty
        rows.append(np.column_stack([signals[f] for f in FEATURES] + [-penalised]))
        labels.append(np.array([e in wanted for e in matcher.entry_ids], dtype=float))
    return np.vstack(rows), np.concatenate(labels)


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 4000,
             rate: float = 0.5) -> np.ndarray:
    """Weights (last one the intercept) by full-batch gradient descent, class-balanced."""
    rng = np.random.default_rng(SEED)
    x = np.column_stack([x, np.ones(len(x))])
    w = rng.normal(0, 0.01, x.shape[1])
    balance = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (balance * (p - y)) / len(y) + l2 * np.r_[w[:-1], 0]
        w -= rate * grad
    return w


WRONG = -1.5  # a confident wrong answer: worse than "I don't know" (0) by 1.5 right ones


def utility(snapshot: Snapshot, guide: Guide, items: list[dict[str, Any]]) -> float:
    total = 0.0
    for item in items:
        o = outcome(item, understand(item["q"], snapshot, guide))
        total += WRONG if o.result == "wrong" else o.points
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {WEIGHTS_FILE}")
    args = parser.parse_args(argv)
    items = questions()
    base = Tuning()
    snapshot, guide = snapshot_and_guide(base)
    x, y = pairs(snapshot, items)
    w = logistic(x, y)
    scale = SCALE / float(sum(max(w[FEATURES.index(f)], 0.0) for f in TEXT_SIGNALS))
    weights = {f: round(max(float(w[i]), 0.0) * scale, 4) for i, f in enumerate(FEATURES)}
    weights["keyword"] = min(weights["keyword"], 0.1)  # a count (0..2), not a 0..1 share
    penalty = round(max(float(w[len(FEATURES)]), 0.0) * scale * 100, 2)
    fitted = replace(base, **weights, programme_penalty=penalty)
    print(f"{len(y)} pairs ({int(y.sum())} right) from {len(items)} questions")
    print("logistic weights:", {**weights, "programme_penalty": penalty})
    print(f"utility with the default tuning: {utility(snapshot, guide, items):.1f}")

    # Thresholds for the fitted weights and for the weights in use (with any signal
    # they lack at its fitted weight); the better of the two by dev utility is kept
    # (the fit does not always beat the old weights).
    current = load_tuning()
    current = replace(current, **{f: weights[f] for f in FEATURES
                                  if getattr(current, f) == getattr(base, f) == 0.0})
    best, best_tuning = -1e9, fitted
    bests: dict[str, float] = {}
    grid = list(itertools.product((35.0, 40.0, 45.0), (8.0, 10.0, 12.0), (25.0, 30.0),
                                  (8.0, 12.0, 16.0)))
    for weights_from, (answer_at, margin, choices_at, cross) in itertools.product(
            (fitted, current), grid):
        tuning = replace(weights_from, answer_at=answer_at, answer_margin=margin,
                         choices_at=choices_at, cross_margin=cross)
        snapshot.matcher.tuning = tuning
        value = utility(snapshot, guide, items)
        name = "fitted" if weights_from is fitted else "in use"
        if value > bests.get(name, -1e9):
            bests[name] = value
        if value > best + 1e-9:
            best, best_tuning = value, tuning
    print("best utility by weights:", bests)
    print(f"utility with the chosen tuning: {best:.1f} "
          f"({'fitted' if best_tuning.phrase == fitted.phrase else 'in use'} weights)")
    chosen = {k: v for k, v in asdict(best_tuning).items() if v != getattr(base, k)}
    print("chosen:", chosen)
    if args.write:
        WEIGHTS_FILE.write_text(
            "# Written by `python -m bench.fit --write` (logistic fit of the signal weights\n"
            "# and a grid search of the thresholds on the blind dev split and devset.yaml).\n"
            + yaml.safe_dump(asdict(best_tuning), sort_keys=False), encoding="utf-8")
        print(f"written to {WEIGHTS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
