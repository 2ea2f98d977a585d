"""Situations and referrals: the shipped files are valid, bad files are named."""

from __future__ import annotations

from pathlib import Path

from content.guidance import (
    asks_from_data,
    load_guidance,
    referrals_from_data,
    situations_from_data,
)
from content.load import catalogue_ids


def test_shipped_situations_and_referrals_have_no_problems() -> None:
    guidance = load_guidance(known_ids=catalogue_ids())
    assert guidance.problems == ()
    assert len(guidance.situations) >= 10
    assert {"tekun-what", "temp-assist-what"} <= set(guidance.hardship_offer)
    offices = {r.office for r in guidance.referrals}
    assert any("残联" in o for o in offices) and any("婚姻登记" in o for o in offices)
    assert any(r.in_bureau for r in guidance.referrals)
    kinds = {a.name: a for a in guidance.asks}
    assert "dibao-apply" in kinds["怎么申请"].entries and "怎么申请" in kinds["怎么申请"].cues


def test_bad_situations_are_reported_by_item() -> None:
    data = {"situations": [
        {"name": "孤寡", "cues": ["一个人过"], "means": ["特困"], "offer": ["no-such-id"]},
        {"name": "空的", "cues": [], "means": ["低保"]},
        {"cues": ["x"]},
    ], "hardship": {"cues": "困难", "offer": ["dibao-what"]}}
    situations, cues, offer, problems = situations_from_data(data, "situations.yaml",
                                                             catalogue_ids())
    assert [s.name for s in situations] == ["孤寡"]
    shown = [str(p) for p in problems]
    assert "situations.yaml: 孤寡: 'offer' names no-such-id, which is no FAQ id" in shown
    assert any(s.startswith("situations.yaml: 空的: 'cues'") for s in shown)
    assert any("situation 3" in s for s in shown)
    assert any(s.startswith("situations.yaml: hardship: 'cues'") for s in shown)
    assert cues == () and offer == ("dibao-what",)


def test_a_referral_term_belongs_to_one_office() -> None:
    data = {"other_departments": [{"office": "医保局", "terms": ["报销"]},
                                  {"office": "人社局", "terms": ["报销", "养老金"]}],
            "in_bureau": [{"office": "", "terms": ["结婚"]}]}
    referrals, problems = referrals_from_data(data, "referrals.yaml")
    assert [r.office for r in referrals] == ["医保局", "人社局"]
    shown = [str(p) for p in problems]
    assert "referrals.yaml: 人社局: term '报销' is also 医保局's" in shown
    assert "referrals.yaml: in_bureau 1: needs an 'office'" in shown


def test_missing_files_give_empty_guidance(tmp_path: Path) -> None:
    guidance = load_guidance(tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert guidance.situations == () and guidance.referrals == () and guidance.problems == ()


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    broken = tmp_path / "situations.yaml"
    broken.write_text("situations: [\n", encoding="utf-8")
    guidance = load_guidance(broken, tmp_path / "none.yaml")
    assert len(guidance.problems) == 1 and "cannot read" in guidance.problems[0].message


def test_duplicate_cues_and_bad_number_limits_are_reported() -> None:
    from content.guidance import limits_from_data

    data = {"situations": [{"name": "孤寡", "cues": ["孤寡", "孤寡"], "means": ["特困"]},
                           {"name": "孤寡", "cues": ["孤寡"], "means": ["特困"]}]}
    _, _, _, problems = situations_from_data(data, "situations.yaml", catalogue_ids())
    shown = [str(p) for p in problems]
    assert "situations.yaml: 孤寡: cue '孤寡' is listed twice" in shown
    assert "situations.yaml: 孤寡: two situations have this name" in shown
    limits, problems = limits_from_data(
        {"numbers": [{"faq": "orphan-support", "age": [0, 17]},
                     {"faq": "no-such-id", "age": [0, 17]},
                     {"faq": "orphan-support", "grade": [3, 1]},
                     {"faq": "orphan-support"}]}, "situations.yaml", catalogue_ids())
    assert [(x.faq_id, x.kind, x.low, x.high) for x in limits] == [
        ("orphan-support", "age", 0, 17), ("no-such-id", "age", 0, 17)]
    shown = [str(p) for p in problems]
    assert "situations.yaml: numbers 2: 'faq' names no-such-id, which is no FAQ id" in shown
    assert "situations.yaml: numbers 3: 'grade' must be [lowest, highest]" in shown
    assert "situations.yaml: numbers 4: needs 'faq' and one of 'age' or 'grade'" in shown


def test_content_check_runs_the_situation_and_referral_checks(tmp_path: Path) -> None:
    """`huimin content check --dir D` reads D's situations.yaml and referrals.yaml."""
    import shutil
    import subprocess
    import sys

    from content import CONTENT_DIR

    shutil.copytree(CONTENT_DIR / "faq", tmp_path / "faq")
    shutil.copy(CONTENT_DIR / "dictionary.yaml", tmp_path / "dictionary.yaml")
    (tmp_path / "situations.yaml").write_text(
        "situations:\n  - name: 孤寡\n    cues: [孤寡, '']\n    means: [特困]\n"
        "    offer: [no-such-id]\n", encoding="utf-8")
    (tmp_path / "referrals.yaml").write_text(
        "other_departments:\n  - office: 医保局\n    terms: [报销]\n"
        "  - office: 人社局\n    terms: [报销]\n", encoding="utf-8")

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin"}
        return subprocess.run([sys.executable, "-m", "huimin.cli", "content", "check", *args],
                              capture_output=True, text=True, timeout=120, env=env,
                              cwd=Path(__file__).resolve().parents[2])

    result = check("--dir", str(tmp_path))
    assert result.returncode == 1, result.stdout
    assert "situations.yaml: 孤寡: 'cues' must be a list of words" in result.stdout
    assert "situations.yaml: 孤寡: 'offer' names no-such-id, which is no FAQ id" in result.stdout
    assert "referrals.yaml: 人社局: term '报销' is also 医保局's" in result.stdout
    shipped = check()
    assert shipped.returncode == 0, shipped.stdout
    assert "situations" in shipped.stdout and shipped.stdout.rstrip().endswith("ok")


def test_bad_kinds_of_question_are_reported_by_item() -> None:
    data = {"asks": [
        {"name": "怎么申请", "cues": ["咋申请"], "entries": ["dibao-apply", "no-such-id"]},
        {"name": "空的", "cues": [], "entries": ["dibao-what"]},
        {"cues": ["多少钱"], "entries": ["dibao-amount"]},
    ]}
    asks, problems = asks_from_data(data, "asks.yaml", catalogue_ids())
    assert [a.name for a in asks] == ["怎么申请"]
    shown = [str(p) for p in problems]
    assert "asks.yaml: 怎么申请: 'entries' names no-such-id, which is no FAQ id" in shown
    assert "asks.yaml: 空的: 'cues' must be a list of words" in shown
    assert "asks.yaml: ask 3: needs a 'name'" in shown
    assert [str(p) for p in asks_from_data({"asks": "x"}, "asks.yaml")[1]] == [
        "asks.yaml: asks: must be a list of {name, cues, entries}"]
