"""Content files are read without anchors and aliases, within a size and a depth, and a
value YAML cannot build is a reported problem, not a crash."""

from __future__ import annotations

import time
import tracemalloc
from datetime import date
from pathlib import Path

import pytest

from content.load import (
    MAX_FILE_BYTES,
    ContentYamlError,
    load_content_files,
    parse_content_yaml,
)


def alias_bomb(levels: int = 30, width: int = 10) -> str:
    """The "billion laughs": each level lists the one before ``width`` times."""
    lines = ['l0: &l0 ["哈哈哈哈哈哈哈哈"]']
    for level in range(1, levels):
        items = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{items}]")
    return "\n".join(lines) + "\n"


def big_alias_bomb() -> str:
    """About 110 KB of aliases, as the tester sent."""
    text = alias_bomb(levels=9)
    filler = ", ".join(["*l8"] * 20000)
    return text + f"entry: [{filler}]\n"


def test_an_alias_bomb_is_refused_at_once_with_little_memory() -> None:
    text = big_alias_bomb()
    assert 100_000 < len(text.encode()) < MAX_FILE_BYTES
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ContentYamlError) as refused:
            parse_content_yaml(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1
    assert peak < 2 * 1024 * 1024, peak
    assert refused.value.kind == "alias" and refused.value.line == 1
    assert "anchors and aliases" in str(refused.value)


@pytest.mark.parametrize(("text", "kind", "line"), [
    ("- id: a\n  answer: &text 好\n  details: *text\n", "alias", 2),
    ("- id: a\n  answer: *nowhere\n", "alias", 2),
    ("- <<: &base {category: 低保}\n", "alias", 1),
    ("- id: a\n  reviewed: 2026-13-45\n", "value", 2),
    ("- id: a\n  answer: " + "9" * 5000 + "\n", "value", 2),
    ("[" * 25 + "]" * 25, "depth", 1),
    ("".join("  " * i + "-\n" for i in range(30)), "depth", 21),
    ("[" * 5000, "syntax", 1),
    ("- id: [unclosed\n", "syntax", 2),
    ("- !!python/object/apply:os.system ['id']\n", "syntax", 1),
])
def test_what_is_refused_is_named_with_its_line(text: str, kind: str, line: int) -> None:
    with pytest.raises(ContentYamlError) as refused:
        parse_content_yaml(text)
    assert (refused.value.kind, refused.value.line) == (kind, line)


def test_an_oversized_text_is_refused_before_parsing() -> None:
    with pytest.raises(ContentYamlError) as refused:
        parse_content_yaml("- " + "好" * MAX_FILE_BYTES)
    assert refused.value.kind == "size"


def test_content_check_reports_bombs_and_oversized_files(tmp_path: Path) -> None:
    faq = tmp_path / "faq"
    faq.mkdir()
    (faq / "bomb.yaml").write_text(big_alias_bomb(), encoding="utf-8")
    (faq / "huge.yaml").write_bytes(b"- " + b"x" * MAX_FILE_BYTES + b"\n")
    (faq / "date.yaml").write_text("- id: a\n  reviewed: 2026-02-30\n", encoding="utf-8")
    started = time.perf_counter()
    files = load_content_files(faq, tmp_path / "none.yaml")
    assert time.perf_counter() - started < 2
    problems = sorted(str(p) for p in files.problems)
    assert files.entries == []
    assert len(problems) == 3
    assert "bomb.yaml: cannot read: line 1: anchors and aliases" in problems[0]
    assert "date.yaml: cannot read: line 2: cannot read the value '2026-02-30'" in problems[1]
    assert f"huge.yaml: cannot read: the file is larger than {MAX_FILE_BYTES} bytes" in (
        problems[2])


def test_plain_content_still_reads() -> None:
    assert parse_content_yaml("\ufeff- id: a\n  reviewed: 2026-11-28\n  x: {b: [1, 2]}\n") == [
        {"id": "a", "reviewed": date(2026, 11, 28),
         "x": {"b": [1, 2]}}]
