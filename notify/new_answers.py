"""Closing the loop on unanswered questions.

When the bot records a question it could not answer, it also records who asked
(``question_askers``: the openid and the time, nothing else). When an editor makes
the question answerable (adds it as a phrasing of an entry, or publishes a new entry
from it), everyone who asked it in the last 48 hours gets, once, a customer-service
message '您之前问的“…”，现在有答案了' with the answer. Past 48 hours WeChat would refuse
the message anyway, and the rows are deleted then (``huimin.casework.cases.forget_old``).

"Once" is kept by claiming the rows (``told_at``) before sending: a failed send is
not retried, so nobody gets it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Insert, and_, insert, select, update

from huimin.casework.cases import ASKER_HOURS
from huimin.casework.models import QuestionAsker
from huimin.db import Database
from notify.wechat import WeChatApi, WeChatError

log = logging.getLogger(__name__)
MAX_TOLD = 500  # askers told per resolution at most (a county's day of one question)
TOLD_TEMPLATE = "您之前问的“{question}”，现在有答案了：\n{answer}"


def asker_row(asked_question_id: int, openid: str, now: datetime) -> Insert:
    """The INSERT recording who asked an unanswered question."""
    return insert(QuestionAsker).values(asked_question_id=asked_question_id, openid=openid,
                                        asked_at=now)


async def remember_asker(db: Database, asked_question_id: int, openid: str,
                         now: datetime) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(asker_row(asked_question_id, openid, now))


@dataclass(frozen=True)
class Told:
    told: int  # messages WeChat accepted
    failed: int  # claimed but refused (window closed, unfollowed …): not retried


async def tell_askers(db: Database, wechat: WeChatApi | None,
                      questions: Sequence[tuple[int, str]], answer: str,
                      now: datetime) -> Told:
    """Tell who asked these questions (asked-question id, the words shown) in the last
    48 hours, once each: one message per WeChat account."""
    if wechat is None or not questions:
        return Told(0, 0)
    shown = dict(questions)
    since = now - timedelta(hours=ASKER_HOURS)
    async with db.session() as session:
        claimed = (await session.execute(
            update(QuestionAsker)
            .where(and_(QuestionAsker.asked_question_id.in_(list(shown)),
                        QuestionAsker.told_at.is_(None), QuestionAsker.asked_at >= since))
            .values(told_at=now)
            .returning(QuestionAsker.openid, QuestionAsker.asked_question_id,
                       QuestionAsker.id))).all()
    first: dict[str, int] = {}
    for openid, asked_id, _ in sorted(claimed, key=lambda r: r[2]):
        first.setdefault(openid, asked_id)
    told = failed = 0
    for openid, asked_id in list(first.items())[:MAX_TOLD]:
        text = TOLD_TEMPLATE.format(question=shown[asked_id][:60], answer=answer)
        try:
            result = await wechat.send_text(openid, text)
        except WeChatError as exc:
            log.warning("telling an asker: WeChat unreachable (%s)", type(exc).__name__)
            failed += 1
            continue
        if result.ok:
            told += 1
        else:
            failed += 1
    return Told(told, failed)


async def askers_waiting(db: Database, asked_ids: Sequence[int], now: datetime) -> int:
    """How many people who asked these in the last 48 hours have not been told yet."""
    if not asked_ids:
        return 0
    async with db.session() as session:
        rows = (await session.scalars(select(QuestionAsker.openid).distinct().where(and_(
            QuestionAsker.asked_question_id.in_(list(asked_ids)),
            QuestionAsker.told_at.is_(None),
            QuestionAsker.asked_at >= now - timedelta(hours=ASKER_HOURS))))).all()
    return len(rows)
