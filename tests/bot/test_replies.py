"""What the bot says for each kind of verdict, from the shipped content."""

from __future__ import annotations

import pytest

from bot.dialog import Snapshot, reply_to_match, understand
from bot.matcher import Band
from content import CONTENT_DIR
from content.guide import Guide
from content.load import load_content_files, load_county
from content.queries import PublishedContent


@pytest.fixture(scope="module")
def bot_parts() -> tuple[Snapshot, Guide, dict]:
    files = load_content_files()
    guide = Guide.load()
    county = load_county(CONTENT_DIR / "county.yaml")
    snapshot = Snapshot.build(PublishedContent(tuple(files.entries), files.dictionary, 1),
                              county, guide)
    return snapshot, guide, county


def reply(parts: tuple[Snapshot, Guide, dict], question: str) -> str:
    snapshot, guide, county = parts
    verdict = understand(question, snapshot, guide)
    assert not isinstance(verdict, str), verdict
    return reply_to_match(verdict, snapshot, county, guide)


@pytest.mark.parametrize("question", ["今天天气咋样", "讲个笑话", "火车票怎么买"])
def test_chit_chat_gets_what_the_bot_can_answer_and_no_promise(bot_parts, question) -> None:
    text = reply(bot_parts, question)
    assert "我只能回答民政救助方面的问题" in text
    assert "回复数字看分类" in text  # the menu
    assert "记下了" not in text


@pytest.mark.parametrize(("question", "office"), [
    ("残疾证咋办,去哪评残", "残联"),
    ("种粮补贴今年一亩地多少钱", "农业农村局"),
    ("新农合住院能报销多少", "医保局"),
    ("养老保险一个月能领多少", "人社局"),
    ("孩子上大学能申请助学金吗", "教育局"),
    ("老兵的补助找哪个部门", "退役军人事务局"),
    ("低保户能申请公租房吗", "住建局"),
])
def test_other_departments_business_names_the_office(bot_parts, question, office) -> None:
    snapshot, _, _ = bot_parts
    match = snapshot.matcher.match(question)
    assert match.band is Band.UNKNOWN and match.reason == "referral"
    text = reply(bot_parts, question)
    assert office in text and "记下了" not in text


@pytest.mark.parametrize(("question", "office"), [
    ("俺闺女想登记结婚去哪办", "婚姻登记"),
    ("俺爹90了高龄津贴一个月给多少", "高龄津贴"),
    ("骨灰盒多少钱一个", "殡仪馆"),
    ("想收养个孩子手续咋弄", "收养"),
])
def test_bureau_business_outside_the_faq_says_where_in_the_bureau(bot_parts, question,
                                                                  office) -> None:
    snapshot, _, county = bot_parts
    assert snapshot.matcher.match(question).reason == "in_bureau"
    text = reply(bot_parts, question)
    assert office in text and county["hotline"] in text and "记下了" not in text


def test_plain_hardship_gets_the_likely_programmes_and_the_hotline(bot_parts) -> None:
    snapshot, _, county = bot_parts
    match = snapshot.matcher.match("家里实在太困难了日子过不下去了")
    assert match.band is Band.CHOICES and match.reason == "hardship"
    assert 2 <= len(match.choices) <= 3
    assert set(match.choices) <= {"dibao-eligibility", "temp-assist-what", "tekun-what"}
    text = reply(bot_parts, "家里实在太困难了日子过不下去了")
    assert "1. " in text and "0. 都不是" in text and county["hotline"] in text


def test_an_in_domain_question_without_an_answer_is_noted(bot_parts) -> None:
    snapshot, _, _ = bot_parts
    match = snapshot.matcher.match("低保户家里的猪生病了怎么治")
    if match.band is Band.UNKNOWN:
        assert "记下了" in reply(bot_parts, "低保户家里的猪生病了怎么治")


def test_how_much_dibao_pays_a_month_is_answered_directly(bot_parts) -> None:
    snapshot, _, _ = bot_parts
    for question in ("低保一个月多少钱", "低保一个月给多少钱", "低保每月给多少", "低保一月多少钱"):
        assert snapshot.matcher.match(question).faq_id in {"dibao-standard", "dibao-amount"}
    assert snapshot.matcher.match("低保一个月多少钱").faq_id == "dibao-standard"


def test_a_second_question_is_offered_after_the_answer(bot_parts) -> None:
    snapshot, _, _ = bot_parts
    text = reply(bot_parts, "一卡通丢了咋补?残疾人两项补贴又是去哪申请")
    assert text.startswith(snapshot.answers["yikatong"])
    assert "您还问了" in text and snapshot.questions["disability-apply"] in text
    assert "回复 1" in text
