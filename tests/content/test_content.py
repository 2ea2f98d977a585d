"""The shipped content, the content rules, export and `huimin init`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, update

from content import FAQ_DIR
from content.load import catalogue_ids, dump_yaml, load_content_files, load_county
from content.models import FaqEntryRow
from content.schema import ANSWER_MAX_CHARS, MESSAGES, REQUIRED, check, render, text_key
from huimin.db import Database
from huimin.settings import DEFAULT_COUNTY_FILE, Settings
from huimin.wiring.cli import _export, initialise

COUNTY = load_county(DEFAULT_COUNTY_FILE)
CATALOGUE = Path(__file__).resolve().parents[3] / "shared" / "faq-catalogue.md"


def test_shipped_content_passes_every_rule() -> None:
    files = load_content_files()
    assert files.problems == []
    assert check(files.entries, COUNTY, files.dictionary, catalogue_ids()) == []


def test_every_catalogue_id_is_covered_once() -> None:
    ids = [entry.id for _, entry in load_content_files().entries]
    assert sorted(ids) == sorted(set(ids))
    assert set(catalogue_ids()) <= set(ids)
    assert len(catalogue_ids()) == 31


@pytest.mark.skipif(not CATALOGUE.is_file(), reason="shared/ catalogue not beside the repo")
def test_catalogue_file_matches_shared_catalogue() -> None:
    rows = [line.split("|")[1].strip() for line in CATALOGUE.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| id")]
    assert set(catalogue_ids()) == {r for r in rows if re.fullmatch(r"[a-z0-9-]+", r)}


def test_entries_have_rich_phrasings_and_short_answers() -> None:
    for _, entry in load_content_files().entries:
        assert len(entry.alternatives) >= 8, entry.id
        assert entry.keywords, entry.id
        assert len(render(entry.answer, COUNTY)) <= ANSWER_MAX_CHARS, entry.id
        assert entry.source, entry.id


def test_seed_figures_are_used_as_written() -> None:
    answers = {e.id: render(e.answer, COUNTY) + (e.details or "")
               for _, e in load_content_files().entries}
    assert "7500" in answers["dibao-standard"] and "625" in answers["dibao-standard"]
    assert "4605" in answers["dibao-exit"] and "1688" in answers["dibao-exit"]
    assert "61.9%" in answers["tekun-care-mode"]
    assert "8125" in answers["elderly-care-home"] and "3015" in answers["elderly-care-home"]
    assert COUNTY["hotline"] in answers["contact"]


def _write(folder: Path, entries: list[dict]) -> Path:
    faq = folder / "faq"
    faq.mkdir(parents=True)
    (faq / "test.yaml").write_text(dump_yaml(entries), encoding="utf-8")
    return faq


def _entry(entry_id: str, **changes: object) -> dict:
    base = {
        "id": entry_id, "category": "低保", "question": f"问题{entry_id}",
        "alternatives": [f"{entry_id}的第{i}种问法" for i in range(8)],
        "keywords": ["低保"], "answer": "请打{{ county.hotline }}。", "source": "national",
        "reviewed": "2026-11-28",
    }
    base.update(changes)
    return base


def _problems(tmp_path: Path, entries: list[dict]) -> list[str]:
    files = load_content_files(_write(tmp_path, entries), tmp_path / "none.yaml")
    return [str(p) for p in files.problems + check(files.entries, COUNTY, files.dictionary)]


def test_check_names_file_and_entry_for_each_problem(tmp_path: Path) -> None:
    problems = _problems(tmp_path, [
        _entry("a-one"),
        _entry("a-one"),
        _entry("a-two", alternatives=["只有一种问法"]),
        _entry("a-three", answer="{{ county.no_such_value }}"),
        _entry("a-four", answer="很长" * 150),
        _entry("a-five", alternatives=["a-one的第0种问法", *[f"五{i}" for i in range(8)]]),
        {"id": "a-six", "question": "缺字段"},
        _entry("a-seven", colour="红"),
    ])
    joined = "\n".join(problems)
    assert "faq/test.yaml: a-one: id already used" in joined
    assert "a-two: needs at least 8 alternative phrasings, has 1" in joined
    assert ("a-three: answer has a placeholder that is not allowed: "
            "{{ county.no_such_value }}") in joined
    assert "a-four: answer is 300 characters, the limit is 200" in joined
    assert "a-five: phrasing 'a-one的第0种问法' is also used by a-one" in joined
    assert "a-six: missing field 'alternatives'" in joined
    assert "a-seven: unknown field 'colour'" in joined


def test_each_problem_says_what_is_wrong_as_a_code_a_field_and_its_values(
        tmp_path: Path) -> None:
    files = load_content_files(_write(tmp_path, [
        _entry("b-one", alternatives=["只有一种问法"]),
        _entry("b-two", answer="很长" * 150),
        _entry("b-three", alternatives=["b-two的第0种问法", *[f"三{i}" for i in range(8)]]),
        {"id": "b-four", "question": "缺字段"},
    ]), tmp_path / "none.yaml")
    found = {(p.entry, p.code): p for p in files.problems + check(files.entries, COUNTY)}
    few = found["b-one", "too_few_alternatives"]
    assert (few.field, dict(few.params)) == ("alternatives", {"least": 8, "has": 1})
    long = found["b-two", "too_long"]
    assert (long.field, dict(long.params)) == ("answer", {"length": 300, "limit": 200})
    shared = found["b-three", "phrasing_shared"]
    assert shared.field == "alternatives"
    assert dict(shared.params) == {"phrasing": "b-two的第0种问法", "owner": "b-two"}
    assert found["b-four", "missing_field"].field in REQUIRED
    # The English sentence for `huimin content check` is made from the same values.
    assert all(p.message == MESSAGES[p.code].format(field=p.field, **p.params)
               for p in found.values())


def test_phrasings_compare_ignoring_punctuation_and_width() -> None:
    assert text_key("低保，怎么申请？") == text_key("低保怎么申请") == text_key("低保 怎么申请!")
    assert text_key("ＡＢＣ") == "abc"


def test_broken_yaml_is_reported_not_raised(tmp_path: Path) -> None:
    faq = tmp_path / "faq"
    faq.mkdir()
    (faq / "bad.yaml").write_text("- id: [unclosed\n", encoding="utf-8")
    files = load_content_files(faq, tmp_path / "none.yaml")
    assert files.entries == []
    assert "bad.yaml" in str(files.problems[0]) and "cannot read" in str(files.problems[0])


def test_missing_catalogue_entry_is_reported(tmp_path: Path) -> None:
    files = load_content_files(_write(tmp_path, [_entry("only-one")]), tmp_path / "n.yaml")
    problems = check(files.entries, COUNTY, files.dictionary, ["only-one", "dibao-what"])
    assert [str(p) for p in problems] == ["content/faq: dibao-what: catalogue entry is missing"]


async def test_init_is_idempotent_and_keeps_admin_edits(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    again = await initialise(settings)
    assert again == {"added": 0, "updated": 0, "kept_admin_edits": 0, "dictionary_added": 0,
                     "dictionary_updated": 0, "situations_added": 0, "situations_updated": 0}
    db = Database(database_url)
    try:
        async with db.session() as session:
            await session.execute(update(FaqEntryRow).where(FaqEntryRow.id == "contact")
                                  .values(answer="管理员改过的答案", edited_by_admin=True))
            await session.execute(update(FaqEntryRow).where(FaqEntryRow.id == "dibao-what")
                                  .values(answer="旧版本的答案"))
        counts = await initialise(settings)
        assert counts["kept_admin_edits"] == 1
        assert counts["updated"] == 1  # the unedited entry comes back from the files
        async with db.session() as session:
            rows = {r.id: r for r in (await session.scalars(select(FaqEntryRow))).all()}
        assert rows["contact"].answer == "管理员改过的答案"
        assert rows["dibao-what"].answer != "旧版本的答案"
    finally:
        await db.dispose()


async def test_export_writes_the_same_format_back(database_url: str, tmp_path: Path) -> None:
    written = await _export(Settings(database_url=database_url), tmp_path)
    assert {p.name for p in written} == {p.name for p in FAQ_DIR.glob("*.yaml")} | {
        "dictionary.yaml"}
    exported = load_content_files(tmp_path / "faq", tmp_path / "dictionary.yaml")
    shipped = load_content_files()
    assert exported.problems == []
    assert {e.id: e for _, e in exported.entries} == {e.id: e for _, e in shipped.entries}
    assert exported.dictionary == shipped.dictionary
    assert yaml.safe_load((tmp_path / "faq" / "contact.yaml").read_text())[0]["id"] == "contact"


def test_init_refuses_broken_content_with_a_clear_message(tmp_path: Path) -> None:
    broken = tmp_path / "county.yaml"
    broken.write_text("bureau_name: 测试\n", encoding="utf-8")  # no hotline etc.
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db", county_file=broken)
    with pytest.raises(SystemExit, match="content has problems"):
        asyncio.run(initialise(settings))
