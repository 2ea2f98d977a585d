"""Bot replies that missed WeChat's deadline, sent later as customer-service messages.

The bot answers WeChat within its five seconds or queues the reply in ``late_replies``;
the worker's loop sends these (:meth:`LateReplies.deliver`) before each batch. WeChat
takes customer-service messages within 48 hours of the user's last message, so older
ones are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, select, update

from huimin.db import Database
from notify.models import LateReply
from notify.wechat import WeChatApi, WeChatUnavailable

log = logging.getLogger(__name__)
WINDOW = timedelta(hours=48)  # WeChat's window for customer-service messages


class LateReplies:
    def __init__(self, db: Database, wechat: WeChatApi, clock: Callable[[], datetime]) -> None:
        self.db, self.wechat, self.clock = db, wechat, clock

    async def deliver(self, limit: int = 50) -> int:
        """Send up to ``limit`` waiting replies; how many went out.

        Each is claimed by setting ``delivered_at`` first (so two workers never both
        send it) and released again if WeChat is unreachable; one WeChat refuses for
        good (the 48-hour window closed, the user left) is dropped with a log line.
        """
        cutoff = self.clock() - WINDOW
        async with self.db.session() as session:
            ids = list((await session.scalars(
                select(LateReply.id).where(and_(LateReply.delivered_at.is_(None),
                                                LateReply.created_at > cutoff))
                .order_by(LateReply.id).limit(limit))).all())
        sent = 0
        for reply_id in ids:
            async with self.db.session() as session:
                claimed = (await session.execute(
                    update(LateReply).where(and_(LateReply.id == reply_id,
                                                 LateReply.delivered_at.is_(None)))
                    .values(delivered_at=self.clock())
                    .returning(LateReply.openid, LateReply.text))).first()
            if claimed is None:
                continue
            try:
                result = await self.wechat.send_text(claimed.openid, claimed.text)
            except WeChatUnavailable:
                result = None
            if result is not None and result.ok:
                sent += 1
                continue
            async with self.db.session() as session:
                if result is not None and result.permanent:
                    log.warning("late reply %s dropped: WeChat refused it (%s)", reply_id,
                                result.errcode)
                    await session.execute(delete(LateReply).where(LateReply.id == reply_id))
                else:
                    await session.execute(update(LateReply).where(LateReply.id == reply_id)
                                          .values(delivered_at=None))
        return sent
