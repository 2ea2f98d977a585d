"""Answers are data: the county placeholders are filled in, nothing else is evaluated.

Every shipped answer and detail must read exactly as it did when answers were jinja2
templates; that old rendering is kept here only, to compare against."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import pytest

from content.load import load_content_files, load_county
from content.placeholders import PLACEHOLDERS, bad_placeholders, fill
from content.schema import FaqEntry, check, render
from huimin.settings import DEFAULT_COUNTY_FILE

COUNTY = load_county(DEFAULT_COUNTY_FILE)
SECRET = "env-secret-that-must-never-show"

_old_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                              keep_trailing_newline=False)


def old_render(template: str, county: dict[str, Any]) -> str:
    """How answers were rendered before (content/schema.py, answer_env)."""
    return _old_env.from_string(template).render(county=county).strip()


def attacks(tmp_path: Path) -> list[str]:
    marker = tmp_path / "ran"
    return [
        "{{ cycler.__init__.__globals__.os.environ['HUIMIN_SECRET_KEY'] }}",
        f"电话{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        "{{ self }}",
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for x in range(3) %}{{ x }}{% endfor %}",
        "{% for %}",
        "{{ county.hotline|attr('x') }}",
        "{{ county.hotline | upper }}",
        "{{ lipsum }}",
        "{{ lipsum.__globals__ }}",
        "{{ config }}",
        "{{ county.items() }}",
        "{{ county['hotline'] }}",
        "{{ county.__class__ }}",
        "{{- county.hotline }}",
        "{# a comment #}好",
        "{{ county.hotline }}{{ 7*7 }}",
        "{{ county.hotline",
        "{{{ county.hotline }}",
    ]


def shipped_texts() -> list[tuple[str, str]]:
    texts = []
    for _, entry in load_content_files().entries:
        texts.append((f"{entry.id}/answer", entry.answer))
        if entry.details:
            texts.append((f"{entry.id}/details", entry.details))
    return texts


def test_every_shipped_answer_reads_as_before() -> None:
    texts = shipped_texts()
    assert len(texts) > 31
    assert any("{{" in text for _, text in texts)  # the comparison covers placeholders
    for where, text in texts:
        assert bad_placeholders(text, COUNTY) == ([], []), where
        assert render(text, COUNTY) == old_render(text, COUNTY), where


def test_placeholders_read_as_before_with_other_county_values() -> None:
    county = {**COUNTY, "payout_day": 15, "hotline": "  0551-{{ x }} ", "address": "甲\n乙"}
    variants = ["{{ county.payout_day }}", "{{county.hotline}}", "a{{  county.address\t}}b",
                "\n  {{ county.hotline }}\n\n", "第一行\r\n第二行{{ county.bureau_name }}\r",
                "}} {{ county.county_name }} }", "{{ county.sms_signature }}"]
    for text in variants:
        assert bad_placeholders(text, county) == ([], []), text
        assert fill(text, county) == old_render(text, county), text


def test_the_allowed_placeholders_are_exactly_the_county_values() -> None:
    assert set(PLACEHOLDERS) == set(COUNTY)


def test_attacks_are_refused_and_never_evaluated(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUIMIN_SECRET_KEY", SECRET)
    for text in attacks(tmp_path):
        refused, _ = bad_placeholders(text, COUNTY)
        assert refused, text
        shown = fill(text, COUNTY)
        # (the attack texts name tmp_path, whose pytest-N counter may itself hold "49")
        evaluated = shown.replace(str(tmp_path), "")
        assert SECRET not in shown and "<class" not in shown and "49" not in evaluated, text
        assert "{" in shown, text  # left as written
    assert not (tmp_path / "ran").exists()


def test_refused_placeholders_are_named_with_the_allowed_ones() -> None:
    entry = FaqEntry(id="a-one", category="低保", question="问题", alternatives=tuple(
        f"第{i}种问法" for i in range(8)), keywords=("低保",),
        answer="请打{{ county.hotline }}，{{ config }}", source="本局",
        reviewed=date(2026, 11, 28),
        details="{% for x in y %}{{ x }}{% endfor %}")
    messages = [str(p) for p in check([("faq/test.yaml", entry)], COUNTY)]
    assert messages[0] == (
        "faq/test.yaml: a-one: answer has a placeholder that is not allowed: {{ config }}; "
        "allowed are {{ county.hotline }}, {{ county.bureau_name }}, {{ county.county_name }}, "
        "{{ county.address }}, {{ county.office_hours }}, {{ county.payout_day }}, "
        "{{ county.sms_signature }}")
    details = [m.split("not allowed: ")[1].split("; allowed are")[0] for m in messages[1:]]
    assert details == ["{% for x in y %}", "{{ x }}", "{% endfor %}"]
    assert all(m.startswith("faq/test.yaml: a-one: details has") for m in messages[1:])


def test_a_missing_county_value_is_reported() -> None:
    refused, missing = bad_placeholders("请打{{ county.hotline }}", {"bureau_name": "局"})
    assert refused == [] and missing == ["hotline"]
    assert fill("请打{{ county.hotline }}", {}) == "请打{{ county.hotline }}"


def test_a_county_value_is_never_filled_in_again() -> None:
    county = {**COUNTY, "address": "{{ county.hotline }}{{ config }}"}
    assert fill("地址：{{ county.address }}", county) == "地址：{{ county.hotline }}{{ config }}"


def test_rendering_a_refused_text_warns_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="content.schema"):
        assert render("请打{{ county.hotline }}\n{{ config }}", COUNTY) == (
            f"请打{COUNTY['hotline']}\n{{{{ config }}}}")
    assert [r.getMessage() for r in caplog.records] == [
        "an answer holds '{{ config }}', which is not a placeholder that can be filled in: "
        "it is shown as written; correct it in the staff UI"]
