"""首页 (the director's dashboard): charts drawn as inline SVG, and the figures behind them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select, update

from admin import stats
from admin.charts import Series, bar_chart, hbar_chart, line_chart, nice_ticks
from admin.web import templates
from bot.models import AskedQuestion
from bot.tally import count_question
from huimin.clock import utcnow
from huimin.db import Database
from huimin.registry.models import Application
from notify.models import OutboxMessage
from tests.admin.conftest import assert_no_clear_numbers, load_demo, rows_of, signed_in


async def add_questions(settings: Any) -> None:
    now = utcnow()
    rows = [
        # asked back, the user picked an entry
        ("低保咋办", "choices", [{"faq_id": "dibao-apply", "score": 55.0}], "dibao-apply", 0),
        # asked back, none of them
        ("低保几年", "choices", [{"faq_id": "dibao-recheck", "score": 50.0}], "0", 1),
        # not answered, close to a 特困 entry
        ("五保老人住哪", "unknown", [{"faq_id": "tekun-care-mode", "score": 35.0}], None, 2),
        # not answered, close to nothing
        ("今天天气", "unknown", [{"faq_id": "contact", "score": 5.0}], None, 3),
        # too old for the charts
        ("很久以前", "unknown", [], None, 45),
    ]
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            for text, band, candidates, chosen, days_ago in rows:
                session.add(AskedQuestion(asked_at=now - timedelta(days=days_ago), text=text,
                                          band=band, candidates=candidates,
                                          chosen_faq_id=chosen))
    finally:
        await db.dispose()


async def add_reminders(settings: Any) -> None:
    (app,) = await rows_of(settings, select(Application).where(
        Application.number == "LZ-2026-0017"))
    now = utcnow()
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            for i in range(3):
                session.add(OutboxMessage(
                    key=f"k{i}", kind="payout", beneficiary_id=app.beneficiary_id, params={},
                    state="delivered" if i else "sent", channel="sms",
                    sent_at=now - timedelta(days=i), delivered_at=now if i else None))
    finally:
        await db.dispose()


async def set_rechecks(settings: Any) -> None:
    """LZ-2026-0009 was due a recheck 40 days ago and rechecked since; LZ-2026-0024 was due
    20 days ago and not rechecked; the demo list's other recheck dates (calendar dates)
    are moved 100 days ahead of today, so that no date of the year decides the counts."""
    today = stats.local_today()
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            await session.execute(update(Application).where(
                Application.recheck_due.is_not(None)).values(
                recheck_due=today + timedelta(days=100)))
            await session.execute(update(Application).where(
                Application.number == "LZ-2026-0009").values(
                recheck_due=today - timedelta(days=40), stage_date=today - timedelta(days=35)))
            await session.execute(update(Application).where(
                Application.number == "LZ-2026-0024").values(
                recheck_due=today - timedelta(days=20), stage_date=today - timedelta(days=400)))
    finally:
        await db.dispose()


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", html, flags=re.S)


async def test_admin_dashboard_draws_every_chart_as_svg(admin_client: Any,
                                                        settings: Any) -> None:
    await load_demo(settings)
    await add_questions(settings)
    await add_reminders(settings)
    await set_rechecks(settings)
    await signed_in(admin_client, settings, "admin")
    response = await admin_client.get("/admin/")
    assert response.status == 200
    html = await response.text()
    pictures = svgs(html)
    assert len(pictures) == 4
    for picture in pictures:
        root = ET.fromstring(picture)  # well-formed, with a title and a description
        assert root.get("role") == "img"
        assert root.find("{http://www.w3.org/2000/svg}title") is not None
        assert root.find("{http://www.w3.org/2000/svg}desc") is not None
        assert root.findall(".//{http://www.w3.org/2000/svg}text")  # axis labels
    assert "<script" not in html.split("</head>")[1]
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "公众号没能直接回答的问题（最近30天）" in html
    assert "最近30天共 4 个" in html and "直接答上的问题目前没有统计" in html
    assert "群众不清楚的政策" in html and "“低保”方面 2 个" in html
    assert "“特困供养”方面 1 个" in html
    assert "提醒每天发出和送达的条数（最近30天）" in html
    assert "最近30天发出提醒 3 条，确认送达 2 条" in html
    assert "到期复核完成情况" in html
    assert "复核日期已经过了的申请共 2 份" in html and "还没复核 1 份" in html
    assert "看具体数字" in html
    assert_no_clear_numbers(html)


async def test_each_role_sees_its_own_charts(admin_client: Any, settings: Any) -> None:
    await signed_in(admin_client, settings, "caseworker")
    html = await (await admin_client.get("/admin/")).text()
    assert len(svgs(html)) == 2
    assert "提醒每天发出和送达" in html and "到期复核完成情况" in html
    assert "没能直接回答" not in html
    admin_client.session.cookie_jar.clear()
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/")).text()
    assert len(svgs(html)) == 2
    assert "没能直接回答" in html and "到期复核" not in html
    assert "这段时间没有数据" in html


async def test_answered_questions_appear_once_the_bot_counts_them(
        admin_client: Any, settings: Any) -> None:
    await add_questions(settings)
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            for _ in range(6):
                await count_question(session)
        async with db.engine.begin() as conn:  # the bot's way: a bare connection
            await count_question(conn)
    finally:
        await db.dispose()
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/")).text()
    assert "公众号每天收到的问题（最近30天）" in html
    assert "最近30天共 11 个问题，直接答上 7 个（64%）" in html


async def test_figures_by_china_day(settings: Any) -> None:
    await add_questions(settings)
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            days = await stats.question_days(session)
            topics = await stats.question_topics(session)
    finally:
        await db.dispose()
    assert len(days.days) == 30 and days.days[-1] == stats.local_today()
    assert (sum(days.picked), sum(days.not_picked), sum(days.unknown)) == (1, 1, 2)
    assert days.picked[-1] == 1 and days.answered is None
    assert topics == [("低保", 2), ("特困供养", 1), (stats.NO_TOPIC, 1)]


# ----- the chart helper -------------------------------------------------------------------
def render(chart: Any) -> str:
    macro = templates.from_string('{% import "_charts.html" as c %}{{ c.chart(chart) }}')
    return macro.render(chart=chart)


def test_nice_ticks() -> None:
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(100) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(1234)[-1] >= 1234


def test_charts_are_well_formed_and_escape_their_words() -> None:
    labels = [f"{d.month}/{d.day}" for d in (date(2026, 11, 1) + timedelta(days=i)
                                             for i in range(30))]
    charts = [
        bar_chart("a", "标题 <b>&", "说明 <i>", labels,
                  [Series("甲<", list(range(30))), Series("乙", [1] * 30)],
                  y_label="个", x_label="日期"),
        line_chart("b", "线", "说明", labels, [Series("发出", [0] * 30)],
                   y_label="条", x_label="日期"),
        hbar_chart("c", "横条", "说明", [("低保", 5), ("说不清是哪方面（没有接近的问答）", 1)],
                   x_label="个", first_column="方面"),
    ]
    for chart in charts:
        ET.fromstring(svgs(render(chart))[0])
    escaped = render(charts[0])
    assert "<b>" not in escaped and "标题 &lt;b&gt;&amp;" in escaped and "甲&lt;" in escaped
    assert charts[1].empty and "这段时间没有数据" in render(charts[1])
    # thirty days: not every day is labelled, but the last one is
    ticks = [s.text for s in charts[0].shapes if s.attrs.get("class") == "chart-tick"
             and "/" in s.text]
    assert 5 <= len(ticks) <= 16 and ticks[-1] == "11/30"
    assert charts[0].table_rows[2] == ["11/3", "2", "1"]


async def test_referred_questions_are_not_counted_as_unanswered(admin_client: Any,
                                                                settings: Any) -> None:
    """A question the bot sent to another office (band "referred") has its own series
    and is left out of the topics the FAQ does not cover."""
    await add_questions(settings)
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            for _ in range(3):
                session.add(AskedQuestion(
                    asked_at=utcnow(), text="医保怎么报销", band="referred",
                    candidates=[{"faq_id": "dibao-payout", "score": 60.0}]))
        async with db.session() as session:
            days = await stats.question_days(session)
            topics = await stats.question_topics(session)
    finally:
        await db.dispose()
    assert (sum(days.unknown), days.referred_total, days.referred[-1]) == (2, 3, 3)
    assert topics == [("低保", 2), ("特困供养", 1), (stats.NO_TOPIC, 1)]
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/")).text()
    assert "最近30天共 7 个" in html
    assert "没答上 2 个，别的部门的事、告诉了去哪里办 3 个" in html
    assert "别的部门的事，告诉了去哪里办" in svgs(html)[0]  # its own series in the legend
