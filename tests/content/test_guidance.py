"""Situations and referrals: the shipped files are valid, bad files are named."""

from __future__ import annotations

from pathlib import Path

from content.guidance import load_guidance, referrals_from_data, situations_from_data
from content.load import catalogue_ids


def test_shipped_situations_and_referrals_have_no_problems() -> None:
    guidance = load_guidance(known_ids=catalogue_ids())
    assert guidance.problems == ()
    assert len(guidance.situations) >= 10
    assert {"tekun-what", "temp-assist-what"} <= set(guidance.hardship_offer)
    offices = {r.office for r in guidance.referrals}
    assert any("残联" in o for o in offices) and any("婚姻登记" in o for o in offices)
    assert any(r.in_bureau for r in guidance.referrals)


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
