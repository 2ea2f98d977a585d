"""The overview page (首页, the director's dashboard): a few counts for whoever signs
in, and charts of what the role may see: questions and the topics people understand
least (内容编辑, 管理员); reminders sent and delivered, and rechecks (经办人员, 管理员)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select

from admin import inbox, stats
from admin.charts import (
    BAD,
    GOOD,
    NEUTRAL,
    PALETTE,
    WARN,
    Chart,
    Series,
    bar_chart,
    day_label,
    day_words,
    hbar_chart,
    line_chart,
)
from admin.faq import SYSTEM
from admin.models import AdminUser, AuditEntry, FaqDraft, FaqVersion
from admin.roles import AUDIT, CASES, CONTENT, INBOX, REGISTRY, USERS, can
from admin.web import render, signed_in, state
from content.models import ContentRevision, FaqEntryRow
from huimin.casework.cases import Routing, open_cases, waiting_text

REFERRED_COLOUR = PALETTE[4]  # purple: neither a failure nor an answer from the FAQ


async def home(request: web.Request) -> web.Response:
    role = signed_in(request).user.role
    facts: dict[str, object] = {}
    async with state(request).db.session() as session:
        if can(role, INBOX):
            facts["inbox"] = await inbox.pending_count(session)
            facts["inbox_referred"] = await inbox.pending_count(session, referred=True)
        if can(role, CONTENT):
            facts["entries"] = await session.scalar(
                select(func.count()).select_from(FaqEntryRow)) or 0
            facts["drafts"] = await session.scalar(
                select(func.count()).select_from(FaqDraft)) or 0
            facts["last_publish"] = await session.scalar(
                select(FaqVersion).where(FaqVersion.published_by != SYSTEM)
                .order_by(FaqVersion.published_at.desc(), FaqVersion.id.desc()).limit(1))
            facts["last_change"] = await session.scalar(
                select(ContentRevision).order_by(ContentRevision.id.desc()).limit(1))
        if can(role, CASES):
            user = signed_in(request).user
            rows = await open_cases(session, await Routing.load(session), user.role,
                                    user.username, state(request).clock())
            facts["cases"] = len(rows)
            facts["cases_oldest"] = waiting_text(rows[0].waiting) if rows else ""
        if can(role, USERS):
            facts["users"] = await session.scalar(
                select(func.count()).select_from(AdminUser)
                .where(AdminUser.disabled.is_(False))) or 0
        charts: list[Chart] = []
        if can(role, INBOX):
            charts.append(question_chart(await stats.question_days(session)))
            charts.append(topic_chart(await stats.question_topics(session)))
        if can(role, REGISTRY):
            charts.append(reminder_chart(*await stats.reminder_days(session)))
            checks = await stats.rechecks(session)
            facts["rechecks"] = checks
            charts.append(recheck_chart(checks))
        facts["charts"] = charts
        if can(role, AUDIT):
            facts["recent"] = (await session.scalars(
                select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                .limit(8))).all()
    return await render(request, "home.html", facts=facts)


def _percent(part: int, whole: int) -> str:
    return f"{round(part * 100 / whole)}%" if whole else "0%"


def question_chart(days: stats.QuestionDays) -> Chart:
    series = [Series("列出选项，群众选中了", days.picked, NEUTRAL),
              Series("列出选项，群众没选", days.not_picked, WARN),
              Series("没答上", days.unknown, BAD),
              Series("别的部门的事，告诉了去哪里办", days.referred, REFERRED_COLOUR)]
    unanswered = days.unanswered_total + days.referred_total
    parts = (f"列出选项后群众选中了答案 {sum(days.picked)} 个，列出选项但没选 "
             f"{sum(days.not_picked)} 个，没答上 {sum(days.unknown)} 个，"
             f"别的部门的事、告诉了去哪里办 {days.referred_total} 个")
    if days.answered is None:
        title = "公众号没能直接回答的问题（最近30天）"
        summary = (f"这张图只算公众号没能直接回答的问题：最近30天共 {unanswered} 个，{parts}。"
                   "直接答上的问题目前没有统计，所以这不是群众提问的总数。")
    else:
        series.insert(0, Series("直接答上", days.answered, GOOD))
        title = "公众号每天收到的问题（最近30天）"
        total = unanswered + days.answered_total
        summary = (f"最近30天共 {total} 个问题，直接答上 {days.answered_total} 个"
                   f"（{_percent(days.answered_total, total)}）；{parts}。")
    return bar_chart("chart-questions", title, summary, [day_label(d) for d in days.days],
                     series, y_label="问题数（个）", x_label="日期",
                     table_labels=[day_words(d) for d in days.days])


def topic_chart(topics: list[tuple[str, int]]) -> Chart:
    total = sum(n for _, n in topics)
    named = [(t, n) for t, n in topics if t != stats.NO_TOPIC]
    if not total:
        summary = "最近30天没有公众号没答好的问题。"
    elif named:
        top = named[:3]
        summary = ("没答好的问题里，" + "，".join(
            f"“{t}”方面 {n} 个（{_percent(n, total)}）" for t, n in top)
            + "。问得多又没答好的方面，说明群众对这方面的政策了解得少，可以多宣传，"
              "或者在“未答问题”里把群众的问法补进问答。")
    else:
        summary = f"没答好的 {total} 个问题都找不到接近的问答，可以到“未答问题”里看看群众在问什么。"
    return hbar_chart("chart-topics", "群众不清楚的政策：没答好的问题属于哪方面（最近30天）",
                      summary, topics[:10], x_label="问题数（个）", first_column="方面")


def reminder_chart(days: list, sent: list[int], delivered: list[int]) -> Chart:
    total_sent, total_delivered = sum(sent), sum(delivered)
    summary = f"最近30天发出提醒 {total_sent} 条，确认送达 {total_delivered} 条"
    if total_sent:
        summary += f"（{_percent(total_delivered, total_sent)}）"
    summary += "。送达要等短信平台或微信回报，有的平台不回报，所以送达数会少一些。"
    return line_chart("chart-reminders", "提醒每天发出和送达的条数（最近30天）", summary,
                      [day_label(d) for d in days],
                      [Series("发出", sent, NEUTRAL), Series("确认送达", delivered, GOOD)],
                      y_label="条数", x_label="日期", table_labels=[day_words(d) for d in days])


def recheck_chart(checks: stats.Rechecks) -> Chart:
    if checks.total:
        summary = (f"复核日期已经过了的申请共 {checks.total} 份："
                   f"已复核（复核日期之后有新的环节日期）{checks.total_done} 份"
                   f"（{_percent(checks.total_done, checks.total)}），"
                   f"还没复核 {checks.total_not_done} 份。")
    else:
        summary = "还没有复核日期已经过了的申请。"
    summary += f"接下来30天内还有 {checks.due_soon} 份要复核。图里是最近12个月。"
    labels = [f"{int(m[5:])}月" for m in checks.months]
    words = [f"{m[:4]}年{int(m[5:])}月" for m in checks.months]
    return bar_chart("chart-rechecks", "到期复核完成情况（按应该复核的月份）", summary, labels,
                     [Series("已复核", checks.done, GOOD),
                      Series("还没复核", checks.not_done, BAD)],
                     y_label="申请数（份）",
                     x_label=f"应该复核的月份（{words[0]}到{words[-1]}）", table_labels=words)
