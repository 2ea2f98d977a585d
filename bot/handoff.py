"""留言给工作人员: the bot's side of the hand-off to a caseworker.

* 转人工 / 找工作人员 / 人工 … (``content/handoff.yaml``) or the menu button start it;
  the bot offers it after two "I don't know" replies in a row and after "none of
  these" in a "did you mean" list.
* Every message (text, or voice as recognised) then joins the person's case (one open
  case per person, see ``huimin.casework.cases``) until they say 好了 (or 算了 before leaving
  anything); the first reply says honestly when staff read messages (read from
  ``office_hours`` in county.yaml) and gives the hotline.
* The last few exchanges (masked) are kept for 30 minutes, so a case carries the
  conversation that led to it: in Redis when it is configured (shared by all
  processes), else in this process's memory (SQLite runs one process; on PostgreSQL
  without Redis a case carries what the process that took it saw).
* A reply announced by a template message is shown with the next reply to the person
  (checked at most once a minute per person: a template goes only to someone silent
  for 48 hours, so the check rarely finds anything and need not run for every message).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import yaml

from bot.store import CONVERSATION_TTL, ConversationStore, RedisConversations
from bot.writes import Writer
from content import CONTENT_DIR
from huimin.casework.cases import (
    DAILY_CASES,
    RECENT_TURNS,
    leave_message,
    open_case_of,
    recent_turn,
)
from huimin.clock import CHINA, utcnow
from huimin.db import Database
from notify.case_replies import waiting_replies
from notify.new_answers import asker_row, remember_asker

HANDOFF_FILE = CONTENT_DIR / "handoff.yaml"
FLOW = "handoff"
UNKNOWN_BEFORE_OFFER = 2  # "I don't know" replies in a row before the offer
MAX_COMBINED = 600  # characters: a shown staff reply and the answer in one reply
WAITING_CHECK = timedelta(minutes=1)  # how often one person's waiting replies are looked up
MEMORY_LIMIT = 20000  # people whose recent exchanges one process keeps in memory
WEEKDAYS = "一二三四五六日"


_WEEKDAY = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "日": 7, "天": 7}
_DAY_RANGE = re.compile(r"周([一二三四五六日天])\s*[至到~～—\-]\s*周?([一二三四五六日天])")
_ONE_DAY = re.compile(r"周([一二三四五六日天])")
_PERIOD = re.compile(r"(上午|中午|下午|晚上)?\s*(\d{1,2})[:：](\d{2})\s*[至到~～—\-]\s*"
                     r"(\d{1,2})[:：](\d{2})")


@dataclass(frozen=True)
class WorkingHours:
    """When staff read messages, read from the county's ``office_hours`` text
    ("周一至周五 上午8:30-12:00，下午14:30-17:30"); None when it cannot be read."""

    days: frozenset[int]  # 1 = Monday
    periods: tuple[tuple[time, time], ...]

    @classmethod
    def from_county(cls, county: Mapping[str, Any]) -> WorkingHours | None:
        text = str(county.get("office_hours") or "")
        days: set[int] = set()
        for first, last in _DAY_RANGE.findall(text):
            days.update(range(_WEEKDAY[first], _WEEKDAY[last] + 1))
        if not days:
            days = {_WEEKDAY[d] for d in _ONE_DAY.findall(text)}
        if not days and "每天" in text:
            days = set(range(1, 8))
        periods = []
        for part, h1, m1, h2, m2 in _PERIOD.findall(text):
            later = 12 if part in {"下午", "晚上"} else 0
            start_h, end_h = int(h1), int(h2)
            start_h += later if start_h < 12 else 0
            end_h += later if end_h < 12 else 0
            if not (start_h < 24 and end_h < 24 and int(m1) < 60 and int(m2) < 60):
                return None
            periods.append((time(start_h, int(m1)), time(end_h, int(m2))))
        if not days or not periods:
            return None
        return cls(frozenset(days), tuple(sorted(periods)))

    def next_opening(self, now: datetime) -> datetime | None:
        """None while staff are at work; else when they next start (China time)."""
        local = now.astimezone(CHINA)
        for offset in range(0, 15):
            day = local.date() + timedelta(days=offset)
            if day.isoweekday() not in self.days:
                continue
            for start, end in self.periods:
                opening = datetime.combine(day, start, tzinfo=CHINA)
                closing = datetime.combine(day, end, tzinfo=CHINA)
                if opening <= local < closing:
                    return None
                if local < opening:
                    return opening
        return None


def when_text(hours: WorkingHours | None, now: datetime) -> str:
    """What the first reply says about when staff will read the message."""
    if hours is None or not hours.periods:
        return "工作人员上班时间会看您的留言，"
    opening = hours.next_opening(now)
    if opening is None:
        return "现在是上班时间，工作人员会尽快看您的留言，"
    today = now.astimezone(CHINA).date()
    return f"现在是下班时间，工作人员一般{_day_words(opening.date(), today)}" \
           f"{_clock_words(opening.time())}上班后看您的留言，"


def _day_words(day: date, today: date) -> str:
    if day == today:
        return "今天"
    if day == today + timedelta(days=1):
        return "明天"
    return f"{day.month}月{day.day}日（周{WEEKDAYS[day.weekday()]}）"


def _clock_words(moment: time) -> str:
    """8:30 -> 上午8点半, 14:00 -> 下午2点 (how people say it)."""
    part = "上午" if moment.hour < 12 else "下午"
    hour = moment.hour - 12 if moment.hour > 12 else moment.hour
    minutes = {0: "点", 30: "点半"}.get(moment.minute, f"点{moment.minute}分")
    return f"{part}{hour}{minutes}"


def _load_words() -> tuple[frozenset[str], frozenset[str]]:
    data = yaml.safe_load(HANDOFF_FILE.read_text(encoding="utf-8")) or {}
    return (frozenset(str(w) for w in data.get("start") or ()),
            frozenset(str(w) for w in data.get("done") or ()))


class RecentInMemory:
    """The recent exchanges in this process (without Redis), on the desk's clock."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.kept: OrderedDict[str, tuple[datetime, dict[str, Any]]] = OrderedDict()

    async def get(self, key: str) -> dict[str, Any]:
        found = self.kept.get(key)
        if found is None or found[0] < self.clock():
            return {}
        return found[1]

    async def put(self, key: str, state: dict[str, Any]) -> None:
        self.kept[key] = (self.clock() + CONVERSATION_TTL, state)
        self.kept.move_to_end(key)
        while len(self.kept) > MEMORY_LIMIT:
            self.kept.popitem(last=False)


@dataclass
class HandoffDesk:
    """Starts hand-offs, takes the messages, offers it, keeps the recent exchanges and
    shows waiting staff replies."""

    db: Database
    county: Mapping[str, Any]
    say: Callable[..., str]
    conversations: ConversationStore
    clock: Callable[[], datetime] = utcnow
    writes: Writer | None = None  # who asked what rides along with the bot's other records
    words: frozenset[str] = field(default_factory=frozenset)
    done_words: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.words:
            self.words, self.done_words = _load_words()
        self.hours = WorkingHours.from_county(self.county)
        self.recent_store: ConversationStore = (
            self.conversations if isinstance(self.conversations, RedisConversations)
            else RecentInMemory(self.clock))
        self.checked: OrderedDict[str, datetime] = OrderedDict()

    def asks_for_a_person(self, text: str, cleaned: str) -> bool:
        return text.strip() in self.words or cleaned in self.words

    # ----- the flow -----------------------------------------------------------------
    async def start(self, openid: str) -> tuple[str, dict[str, Any]]:
        async with self.db.session() as session:
            case = await open_case_of(session, openid=openid)
        return (self.say("handoff_ask.j2", open_case=case is not None),
                {"flow": FLOW, "left": False})

    async def handle(self, openid: str, text: str, cleaned: str,
                     state: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The reply and new state when the message starts or continues a hand-off;
        None otherwise."""
        if self.asks_for_a_person(text, cleaned):
            return await self.start(openid)
        if state.get("flow") != FLOW:
            return None
        if text.strip() in self.done_words or cleaned in self.done_words:
            return self.say("handoff_done.j2" if state.get("left") else
                            "handoff_cancelled.j2"), {}
        now = self.clock()
        left = await leave_message(self.db, openid, text, now,
                                   recent=await self.recent(openid))
        if left.refused == "daily_cap":
            return self.say("handoff_cap.j2", count=DAILY_CASES), {}
        if left.refused == "full":
            return self.say("handoff_full.j2"), {}
        if left.refused == "empty":
            return self.say("handoff_ask.j2", open_case=False), state
        if not state.get("left"):
            return (self.say("handoff_left.j2", when=when_text(self.hours, now)),
                    {"flow": FLOW, "left": True})
        return self.say("handoff_added.j2"), {"flow": FLOW, "left": True}

    def offer(self) -> str:
        return self.say("handoff_offer.j2")

    def after_unknown(self, previous: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The state after an "I don't know" reply, and whether to offer a person now."""
        streak = int(previous.get("unknown") or 0) + 1
        return {"unknown": streak}, streak >= UNKNOWN_BEFORE_OFFER

    # ----- around every reply -------------------------------------------------------
    @staticmethod
    def _recent_key(openid: str) -> str:
        key = "recent:" + openid
        if len(key) <= 64:
            return key
        return "recent:" + hashlib.sha256(openid.encode()).hexdigest()[:40]

    async def recent(self, openid: str) -> list[dict[str, str]]:
        stored = await self.recent_store.get(self._recent_key(openid))
        return list(stored.get("turns") or [])

    async def after_reply(self, openid: str, said: str, reply: str | None) -> str | None:
        """Show staff replies waiting for this person, and keep this exchange."""
        waiting = await self._waiting(openid)
        turns = (await self.recent(openid) + recent_turn(said, reply or ""))
        await self.recent_store.put(self._recent_key(openid),
                                    {"turns": turns[-2 * RECENT_TURNS:]})
        if not waiting:
            return reply
        shown = self.say("handoff_reply.j2", replies=waiting)
        if reply and len(shown) + len(reply) <= MAX_COMBINED:
            return shown + "\n\n" + reply
        return shown

    async def _waiting(self, openid: str) -> list[str]:
        now = self.clock()
        last = self.checked.get(openid)
        if last is not None and timedelta(0) <= now - last < WAITING_CHECK:
            return []
        self.checked[openid] = now
        self.checked.move_to_end(openid)
        while len(self.checked) > MEMORY_LIMIT:
            self.checked.popitem(last=False)
        return await waiting_replies(self.db, openid)

    async def remember_asker(self, asked_question_id: int, openid: str) -> None:
        """Who asked an unanswered question (write-behind with the bot's other records
        when the process has a writer)."""
        if self.writes is None:
            await remember_asker(self.db, asked_question_id, openid, self.clock())
            return
        statement = asker_row(asked_question_id, openid, self.clock())
        self.writes.later(lambda conn: conn.execute(statement).rowcount)
