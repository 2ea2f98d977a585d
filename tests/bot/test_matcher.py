"""Normalisation, matching bands and the accuracy floors on the dev and holdout sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.dialog import matcher_for
from bot.matcher import Band, Matcher
from content.guide import Guide
from content.load import load_content_files
from content.queries import PublishedContent

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    files = load_content_files()
    return matcher_for(Guide.load(), PublishedContent(tuple(files.entries), files.dictionary, 1))


def score_set(matcher: Matcher, name: str) -> tuple[float, float, int]:
    """(in-scope score, off-topic declined share, wrong confident answers)."""
    items = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
    points = declined = wrong = in_scope = off_topic = 0.0
    for item in items:
        match = matcher.match(item["q"])
        if item["expect"] is None:
            off_topic += 1
            declined += match.band is Band.UNKNOWN
            wrong += match.band is Band.ANSWER
            continue
        in_scope += 1
        if match.faq_id == item["expect"]:
            points += 1
        elif item["expect"] in match.choices:
            points += 0.5
        elif match.band is Band.ANSWER:
            wrong += 1
    return points / in_scope, declined / off_topic, int(wrong)


def test_dev_set_is_big_enough_and_labelled_with_catalogue_ids() -> None:
    from content.load import catalogue_ids

    for name, minimum in (("devset.yaml", 200), ("holdout.yaml", 100)):
        items = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
        assert len(items) >= minimum
        assert {i["expect"] for i in items} - {None} <= set(catalogue_ids())
        assert sum(i["expect"] is None for i in items) >= 30


def test_accuracy_floor_on_dev_set(matcher: Matcher) -> None:
    in_scope, declined, wrong = score_set(matcher, "devset.yaml")
    # Measured 0.93 / 0.95 / 4 when written; the floors leave a little room.
    assert in_scope >= 0.90
    assert declined >= 0.90
    assert wrong <= 6


def test_accuracy_floor_on_holdout_set(matcher: Matcher) -> None:
    in_scope, declined, wrong = score_set(matcher, "holdout.yaml")
    # Measured 0.95 / 0.93 / 2 when written.
    assert in_scope >= 0.88
    assert declined >= 0.88
    assert wrong <= 4


@pytest.mark.parametrize("question", [
    "低保标准是多少",
    "低保標準是多少？",  # traditional characters
    "ＤＩＢＡＯ低保标准是多少！！",  # full width
    "请问一下那个低保标准是多少😀",  # filler words and emoji
    "低包标准是多少",  # pinyin-input homophone
    "底保标准是多少钱",
])
def test_variants_of_one_question_get_the_same_answer(matcher: Matcher, question: str) -> None:
    assert matcher.match(question).faq_id == "dibao-standard"


def test_dialect_and_voice_style_questions(matcher: Matcher) -> None:
    assert matcher.match("俺家低保咋申请").faq_id == "dibao-apply"
    assert matcher.match("喂你好我想问一下五宝户是啥意思").faq_id == "tekun-what"
    assert matcher.match("一卡痛丢了咋整").faq_id == "yikatong"


def test_programme_named_in_the_question_wins(matcher: Matcher) -> None:
    # Without the programme rule both rank 低保's "how to apply" first.
    assert matcher.match("俺想吃五保 去哪里申请").candidates[0].faq_id == "tekun-apply"
    assert matcher.match("残疾人补贴去哪里申请").candidates[0].faq_id == "disability-apply"


def test_vague_question_asks_back_with_at_most_three_choices(matcher: Matcher) -> None:
    match = matcher.match("低保")
    assert match.band is Band.CHOICES
    assert 1 <= len(match.choices) <= 3
    assert all(c.startswith("dibao-") for c in match.choices)


@pytest.mark.parametrize("question", [
    "明天会下雨吗", "猪肉多少钱一斤", "手机话费怎么交", "讲个笑话", "火车票怎么买",
])
def test_off_topic_questions_are_declined(matcher: Matcher, question: str) -> None:
    match = matcher.match(question)
    assert match.band is Band.UNKNOWN
    assert match.faq_id is None and match.choices == []


def test_other_departments_business_is_referred(matcher: Matcher) -> None:
    match = matcher.match("新农合住院能报销多少")
    assert match.band is Band.UNKNOWN
    assert match.referral is not None and "医保" in match.referral
    assert match.reason == "referral"
    # Naming the bureau's own programme keeps the question here.
    assert matcher.match("低保户住院报销后还有困难能申请临时救助吗").referral is None


def test_empty_and_punctuation_only_questions(matcher: Matcher) -> None:
    for question in ("", "？？？", "😀😀", "   "):
        assert matcher.match(question).band is Band.UNKNOWN


def test_pruned_matching_gives_the_same_verdicts() -> None:
    """Above PRUNE_ABOVE phrasings only promising entries get the exact rapidfuzz scan:
    bands, candidates and scores must be those of the full scan."""
    from bench.synthetic import synthetic_faq

    files = load_content_files()
    content = PublishedContent(tuple(("s.yaml", e) for e in synthetic_faq(300)),
                               files.dictionary, 1)

    class Full(Matcher):
        PRUNE_ABOVE = 10**9

    class Pruned(Matcher):
        PRUNE_ABOVE = 0

    guide = Guide.load()
    full = Full([e for _, e in content.entries], content.dictionary, guide.other_departments,
                guide.domain_terms, guide.programmes)
    pruned = Pruned([e for _, e in content.entries], content.dictionary,
                    guide.other_departments, guide.domain_terms, guide.programmes)
    questions = [item["q"] for name in ("devset.yaml", "holdout.yaml")
                 for item in yaml.safe_load((DATA / name).read_text(encoding="utf-8"))]
    for question in questions:
        a, b = pruned.match(question), full.match(question)
        assert (a.band, a.candidates, a.referral) == (b.band, b.candidates, b.referral), question


@pytest.mark.parametrize(("question", "faq_id"), [
    ("dibao biaozhun shi duoshao", "dibao-standard"),  # whole message, spaced
    ("tekungongyangzenmeshenqing", "tekun-apply"),  # whole message, run together
    ("低保shenqing要几步", "dibao-process"),  # mixed into Chinese
    ("ykt丢了咋办", "yikatong"),  # initials (content/dictionary.yaml)
])
def test_typed_pinyin_is_read_as_the_syllables_it_spells(matcher: Matcher, question: str,
                                                         faq_id: str) -> None:
    assert matcher.match(question).faq_id == faq_id


def test_letters_that_are_not_pinyin_stay_as_they_are(matcher: Matcher) -> None:
    assert matcher.normalise.clean("hello") == "hello"
    assert matcher.normalise.clean("回复TD退订") == "回复td退订"
    assert matcher.normalise.clean("dibao") == "低保"


@pytest.fixture(scope="module")
def blind_test_figures() -> dict[str, dict[str, float]]:
    """The blind test split scored through the bot's path (bench.accuracy); the split
    is only ever scored, never read while tuning (tests/data/blind/README.md)."""
    from bench.accuracy import bot_reader, evaluate, read_questions, summary

    return summary(evaluate(read_questions(DATA / "blind" / "test.jsonl"), bot_reader()))


def test_accuracy_floors_on_the_blind_test_split(
        blind_test_figures: dict[str, dict[str, float]]) -> None:
    f = blind_test_figures
    # Measured (issue 10, round 3; round 2 in brackets): in scope 0.879 (0.871), 83 % right
    # (81 %), 11 confident wrong answers of 424 (9); off-topic 0.943 with 1 confident
    # answer in 106 (2); pinyin 0.96, long story 0.83 (0.84), situation 0.65 (0.63), voice
    # 0.97, plain 1.00, dialect 0.85 (0.84), two in one 0.92 (0.91), relative 0.89 (0.87),
    # numbers 0.85 (0.84). The floors leave a little room; wrong answers have a ceiling of
    # their own.
    in_scope = f["in scope"]
    assert in_scope["score"] >= 0.86
    assert in_scope.get("right", 0) / in_scope["n"] >= 0.80
    assert in_scope.get("wrong", 0) <= 12
    assert f["off-topic"]["score"] >= 0.92
    assert f["off-topic"].get("wrong", 0) * 40 / f["off-topic"]["n"] <= 1.0
    for kind, floor in (("pinyin", 0.93), ("long_story", 0.80), ("situation", 0.62),
                        ("voice", 0.94), ("plain", 0.97), ("dialect", 0.82),
                        ("two_in_one", 0.88), ("relative", 0.86), ("numbers", 0.82)):
        assert f[kind]["score"] >= floor, kind


def test_numbers_that_decide_an_entry_are_read() -> None:
    from bot.matcher import numbers_in

    assert numbers_in("孩子15岁爹妈都走了") == {"age": (15,), "grade": ()}
    assert numbers_in("老汉七十多了无儿无女")["age"] == (70,)
    assert numbers_in("我68了老伴走了")["age"] == (68,)
    assert numbers_in("申请3个月了十年了还没批") == {"age": (), "grade": ()}
    assert numbers_in("我是四级听力残疾")["grade"] == (4,)


def test_an_age_rules_out_the_entries_for_children(matcher: Matcher) -> None:
    # Before ages were read: answered confidently with the orphans' allowance.
    match = matcher.match("村里有个光棍老头六十六了,耳朵也听不见了,平时靠亲戚给口饭吃,"
                          "像他这样的政府管不管?")
    assert match.band is not Band.ANSWER or match.faq_id == "tekun-what"
    assert "tekun-what" in [c.faq_id for c in match.candidates]
    assert "orphan-support" not in [c.faq_id for c in match.candidates]
    assert matcher.match("孩子15岁爹妈都走了能领啥补助").faq_id == "orphan-support"


def test_the_asking_part_decides_over_the_situation(matcher: Matcher) -> None:
    # 瘫/伺候 stand for the care subsidy, but the question names the care home.
    match = matcher.match("俺爹瘫在床上好几年了,吃喝拉撒都要人伺候,俺想问问能不能送他住养老院?")
    assert match.faq_id == "elderly-care-home"


def test_a_vague_asking_clause_reads_the_clause_before_it(matcher: Matcher) -> None:
    match = matcher.match("俺娘每个月都让俺去信用社看钱来没来,跑一趟老远。"
                          "听说这个号能设个提醒,钱一到就发消息,这个咋弄?")
    assert match.faq_id == "reminders-howto"


def test_a_household_s_own_figures_get_the_amount_not_the_standard(matcher: Matcher) -> None:
    assert matcher.match("我家3口人一个月收入1500低保能补多少").faq_id == "dibao-amount"
    assert matcher.match("低保一个月多少钱").faq_id == "dibao-standard"


def test_two_questions_in_one_message_answer_the_first_and_offer_the_second(
        matcher: Matcher) -> None:
    match = matcher.match("一卡通丢了咋补?残疾人两项补贴又是去哪申请")
    assert match.faq_id == "yikatong"
    assert [c.faq_id for c in match.also] == ["disability-apply"]
    # A story's "好几年" is no question of its own.
    match = matcher.match("俺吃低保好几年了,钱一直打在一卡通上,赶集把钱包丢了,卡也在里头,"
                          "这卡丢了咋补?")
    assert match.faq_id == "yikatong" and match.also == ()


def test_the_kind_of_question_tells_one_programmes_entries_apart(matcher: Matcher) -> None:
    """content/asks.yaml: "咋申请" is about applying, "是啥" about what it is, whatever
    else the phrasing shares with the other entries of that programme."""
    sound = matcher.normalise("低保到底咋申请啊").sound
    kinds = {matcher._asks[n].name for n in matcher.asks_in(sound)}
    assert kinds == {"怎么申请"}
    signals = matcher.signals(matcher.normalise("低保到底咋申请啊"))
    ids = matcher.entry_ids
    assert signals["asks"][ids.index("dibao-apply")] == 1.0
    assert signals["asks"][ids.index("dibao-what")] == 0.0
    # Without a programme named, the kind alone says nothing (it never picks one).
    assert not matcher.signals(matcher.normalise("到底咋申请啊"))["asks"].any()


def test_a_situation_cue_with_a_gap_matches_words_apart(matcher: Matcher) -> None:
    """"父母…去世" in situations.yaml matches "父母两个都去世了" (a few characters apart,
    in that order) and not the words the other way round or far apart."""
    orphan = next(n for n, s in enumerate(matcher._situations) if "孤儿" in s.means)
    assert orphan in matcher.read("孩子父母两个都去世了,有啥补助").situations
    assert orphan not in matcher.read("去世的是他爷爷,父母还在外地打工,有啥补助").situations
    assert orphan not in matcher.read(
        "父母在外地打工好多年了一直没回来过爷爷前年去世了").situations
