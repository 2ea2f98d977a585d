"""What the bot says: from a parsed WeChat message to the reply text.

Knows nothing of HTTP or crypto (see ``bot.webhook``); tests call
:meth:`Bot.reply_for` with a parsed message and no server.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from sqlalchemy import insert, update

from bot import grants
from bot.matcher import Band, Match, Matcher, load_tuning
from bot.models import AskedQuestion, Follower
from bot.status import StatusDesk
from bot.store import ConversationStore
from bot.tally import AnswerCounter
from bot.writes import Operation, Writer
from content import TEMPLATES_DIR
from content.guide import Guide
from content.queries import PublishedContent
from content.schema import render
from huimin.clock import utcnow
from huimin.db import Database, upsert
from huimin.personal import mask_text
from notify.receipts import opt_in, opt_out, wechat_job_finished

log = logging.getLogger(__name__)
_DIGITS = re.compile(r"^\d{1,2}$")
_LONG_DIGITS = re.compile(r"\d{4,}")
_TYPED_DIGITS = re.compile(r"\d{7,}")
# The band recorded for a question answered with where to go (another office's business).
REFERRED = "referred"
_PARTICLES = "啊呀啦吧呢哈嘛哦噢喔嗯了"
REMINDER_COMMANDS = {"关闭提醒": False, "取消提醒": False, "不要提醒": False, "退订": False,
                     "开启提醒": True, "打开提醒": True, "恢复提醒": True}
MEDIA_TYPES = {"image", "video", "shortvideo", "location", "link", "file"}

replies_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "replies"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=False,
    keep_trailing_newline=False,
)


def mask_digits(text: str) -> str:
    """Hide any run of 4+ digits (ID numbers, phone numbers, card numbers)."""
    return _LONG_DIGITS.sub(lambda m: "*" * len(m.group(0)), text)


def mask_typed(text: str) -> str:
    """A message as typed, for the staff inbox: ID and phone numbers masked as
    everywhere (3413**********004X, 138****8000), any other run of 7+ digits hidden,
    whitespace collapsed."""
    text = _TYPED_DIGITS.sub(lambda m: "*" * len(m.group(0)), mask_text(text))
    return " ".join(text.split())


_NUMBER_SPACING = re.compile(r"[\s\-]")


def carries_personal_number(text: str) -> bool:
    """Whether a message has an ID number, a phone number or another run of 7+ digits
    in it (also written with spaces or dashes, or in full-width digits). Such a message
    is never stored for the inbox: the name next to the number would be kept in clear."""
    compact = _NUMBER_SPACING.sub("", unicodedata.normalize("NFKC", text))
    return mask_text(compact) != compact or _TYPED_DIGITS.search(compact) is not None


def matcher_for(guide: Guide, content: PublishedContent) -> Matcher:
    """A matcher for ``content`` with the guide's domain words (and the situations
    staff keep in the database, when it has them)."""
    guidance = guide.guidance
    if content.situations is not None:
        guidance = dataclasses.replace(guidance, situations=content.situations)
    return Matcher([entry for _, entry in content.entries], content.dictionary,
                   guide.other_departments, guide.domain_terms, guide.programmes,
                   tuning=load_tuning(), guidance=guidance,
                   answer_first=guide.answer_first, second_when=guide.second_when)


def answered_with(match: Match) -> str | None:
    """The entry the matcher answers with (None when it offers choices or nothing)."""
    return match.candidates[0].faq_id if match.band is Band.ANSWER else None


@dataclass
class Snapshot:
    """One published content revision, ready to answer from."""

    revision: int
    matcher: Matcher
    questions: dict[str, str]
    answers: dict[str, str]
    details: dict[str, str]

    @classmethod
    def build(cls, content: PublishedContent, county: Mapping[str, Any], guide: Guide) -> Snapshot:
        entries = [entry for _, entry in content.entries]
        return cls(
            revision=content.revision,
            matcher=matcher_for(guide, content),
            questions={e.id: e.question for e in entries},
            answers={e.id: render(e.answer, county) for e in entries},
            details={e.id: render(e.details, county) for e in entries if e.details},
        )


def say(template: str, county: Mapping[str, Any], guide: Guide, **values: Any) -> str:
    """Render one reply template from ``content/templates/replies``."""
    text = replies_env.get_template(template).render(county=county, topics=guide.topics,
                                                     **values)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def reply_to_match(match: Match, snapshot: Snapshot, county: Mapping[str, Any],
                   guide: Guide) -> str:
    """The reply for a matcher verdict: the answer, the choices (or the programmes a
    told hardship may fit, with the hotline), where to go for business that is not
    this FAQ's, what the bot can answer (chit-chat), or an honest "I don't know yet"
    (in-domain questions only: those are what the staff inbox collects)."""
    if match.band is Band.ANSWER:
        answer = snapshot.answers[match.candidates[0].faq_id]
        if match.also:  # a second question in the same message: offered after the answer
            return answer + "\n\n" + say("also_asked.j2", county, guide,
                                          question=snapshot.questions[match.also[0].faq_id])
        return answer
    if match.band is Band.CHOICES:
        return say("hardship.j2" if match.reason == "hardship" else "did_you_mean.j2",
                   county, guide, questions=[snapshot.questions[c] for c in match.choices])
    if match.referral:
        return say("in_bureau.j2" if match.reason == "in_bureau" else "referral.j2",
                   county, guide, office=match.referral)
    if match.reason == "off_domain":
        return say("only_assistance.j2", county, guide)
    return say("dont_know.j2", county, guide, referral=None)


def intent_of(cleaned: str, guide: Guide, matcher: Matcher) -> str | None:
    """greeting, thanks, help or more, when the whole (cleaned) message is one."""
    forms = {cleaned, cleaned.rstrip(_PARTICLES), matcher.normalise.strip_fillers(cleaned)}
    for intent, phrases in guide.intents.items():
        if forms & phrases:
            return intent
    return None


def understand(text: str, snapshot: Snapshot, guide: Guide) -> str | Match:
    """What the bot makes of a free-text question: an intent's name, or the
    matcher's verdict. (Status lookups, digits and reminder commands come first in
    :meth:`Bot.answer_text`; this is the rest, and what ``bench.accuracy`` scores.)"""
    matcher = snapshot.matcher
    intent = intent_of(matcher.normalise.clean(text), guide, matcher)
    return intent if intent is not None else matcher.match(text)


@dataclass
class Bot:
    """Answers one beneficiary's message, keeping per-openid state in ``conversations``."""

    snapshot: Snapshot
    guide: Guide
    county: Mapping[str, Any]
    conversations: ConversationStore
    db: Database
    status: StatusDesk | None = None
    handoff: Any = None  # bot.handoff.HandoffDesk: 留言给工作人员
    answered: AnswerCounter = field(default_factory=AnswerCounter)
    stats: dict[str, int] = field(default_factory=dict)
    writes: Writer | None = None  # batches the records below with other messages'

    def say(self, template: str, **values: Any) -> str:
        return say(template, self.county, self.guide, **values)

    # ----- entry point -----------------------------------------------------
    async def reply_for(self, message: Any) -> str | None:
        """The reply text for a parsed wechatpy message, or None for no reply (with any
        caseworker reply waiting for this person shown first)."""
        reply = await self._reply_for(message)
        if self.handoff is not None and message.type in {"text", "voice", "event"}:
            said = (message.content if message.type == "text" else
                    message.recognition if message.type == "voice" else
                    f"（点了菜单：{message.key}）" if (message.event or "").lower() == "click"
                    else None)
            if said is not None:
                reply = await self.handoff.after_reply(str(message.source), said or "", reply)
        return reply

    async def _reply_for(self, message: Any) -> str | None:
        kind = message.type
        self.stats[kind] = self.stats.get(kind, 0) + 1
        openid = str(message.source)
        if kind == "text":
            return await self.answer_text(openid, message.content or "")
        if kind == "voice":
            recognised = (message.recognition or "").strip()
            if not recognised:
                return self.say("voice_unclear.j2")
            return await self.answer_text(openid, recognised)
        if kind == "event":
            return await self.answer_event(openid, message)
        if kind in MEDIA_TYPES:
            return self.say("media.j2", kind=kind)
        return self.say("media.j2", kind="other")

    async def answer_event(self, openid: str, message: Any) -> str | None:
        event = (message.event or "").lower()
        if event in {"subscribe", "subscribe_scan"}:
            await self._set_following(openid, True)
            return self.say("welcome.j2")
        if event == "unsubscribe":
            await self._set_following(openid, False)
            return None
        if event == "scan":
            return self.say("menu.j2")
        if event == "templatesendjobfinish":
            await wechat_job_finished(self.db, str(message.id), str(message.status or ""))
            return None
        if event == "click":
            return await self.answer_click(openid, str(message.key or ""))
        return None

    async def answer_click(self, openid: str, key: str) -> str:
        action = self.guide.clicks.get(key)
        if action is None:
            return self.say("menu.j2")
        if "topic" in action:
            return await self.show_topic(openid, int(action["topic"]))
        if "topics" in action:
            return await self.show_topics(openid, [int(n) for n in action["topics"]])
        if "faq" in action:
            return await self.give_answer(openid, str(action["faq"]))
        if "reminders" in action:
            return await self.set_reminders(openid, action["reminders"] == "on")
        if "handoff" in action and self.handoff is not None:
            reply, state = await self.handoff.start(openid)
            await self.conversations.put(openid, state)
            return reply
        if "status" in action and self.status is not None:
            reply, state = await self.status.start(openid)
            await self.conversations.put(openid, state)
            return reply
        return self.say("menu.j2")

    async def answer_text(self, openid: str, text: str) -> str:
        matcher = self.snapshot.matcher
        cleaned = matcher.normalise.clean(text)
        state = await self.conversations.get(openid)
        if self.status is not None and grants.asks_for_code(text):  # 我的授权码
            return await grants.reply(self.db, self.status.vault, openid, self.say,
                                      self.status.clock())
        if self.status is not None:
            handled = await self.status.handle(openid, text, cleaned, state)
            if handled is not None:
                reply, new_state = handled
                await self.conversations.put(openid, new_state)
                return reply
        if self.handoff is not None:
            handled = await self.handoff.handle(openid, text, cleaned, state)
            if handled is not None:
                reply, new_state = handled
                await self.conversations.put(openid, new_state)
                return reply
        if _DIGITS.match(cleaned):
            return await self.answer_number(openid, int(cleaned), state)
        if cleaned in REMINDER_COMMANDS:
            return await self.set_reminders(openid, REMINDER_COMMANDS[cleaned])
        intent = intent_of(cleaned, self.guide, matcher)
        if intent == "greeting":
            return self.say("greeting.j2")
        if intent == "thanks":
            return self.say("thanks.j2")
        if intent == "help":
            await self.conversations.put(openid, {})
            return self.say("menu.j2")
        if intent == "more":
            detail = self.snapshot.details.get(str(state.get("last_faq")))
            return detail or self.say("no_details.j2")
        match = matcher.match(text)
        asks = self.guide.my_status
        if (asks is not None and self.status is not None and self.status.vault is not None
                and asks.asked(cleaned, answered_with(match))):
            self.answered.add()
            reply, new_state = await self.status.start(openid)
            await self.conversations.put(openid, new_state)
            return reply
        return await self.answer_match(openid, match, text, state)

    async def answer_match(self, openid: str, match: Match, typed: str = "",
                           previous: dict[str, Any] | None = None) -> str:
        if match.band is Band.ANSWER:
            self.answered.add()
            answer = await self.give_answer(openid, match.candidates[0].faq_id)
            if match.also:
                await self.conversations.put(openid, {
                    "last_faq": match.candidates[0].faq_id,
                    "choices": [c.faq_id for c in match.also], "kind": "also"})
                return reply_to_match(match, self.snapshot, self.county, self.guide)
            return answer
        asked_id = await self._record_asked(match, typed)
        if asked_id is not None and self.handoff is not None:
            await self.handoff.remember_asker(asked_id, openid)
        offer = False
        if match.band is Band.CHOICES:
            state = {"choices": match.choices, "asked": asked_id, "kind": "did_you_mean"}
        elif self.handoff is not None and not match.referral:  # "I don't know"
            state, offer = self.handoff.after_unknown(previous or {})
        else:
            state = {}
        await self.conversations.put(openid, state)
        reply = reply_to_match(match, self.snapshot, self.county, self.guide)
        return reply + "\n" + self.handoff.offer() if offer else reply

    async def set_reminders(self, openid: str, wanted: bool) -> str:
        """关闭提醒 / 开启提醒: this WeChat user's reminders (checked again at send time)."""
        if wanted:
            await opt_in(self.db, "wechat", openid)
        else:
            await opt_out(self.db, "wechat", openid, "wechat_menu")
        return self.say("reminders_on.j2" if wanted else "reminders_off.j2")

    async def answer_number(self, openid: str, number: int, state: dict[str, Any]) -> str:
        choices = state.get("choices") or []
        if choices:
            if state.get("kind") == "did_you_mean" and number == 0:
                await self._record_choice(state.get("asked"), "0")
                await self.conversations.put(openid, {})
                offer = "\n" + self.handoff.offer() if self.handoff is not None else ""
                return self.say("none_of_these.j2") + offer
            if 1 <= number <= len(choices):
                chosen = str(choices[number - 1])
                if state.get("kind") == "did_you_mean":
                    await self._record_choice(state.get("asked"), chosen)
                return await self.give_answer(openid, chosen)
        if 1 <= number <= len(self.guide.topics):
            return await self.show_topic(openid, number)
        return self.say("bad_number.j2")

    async def show_topic(self, openid: str, number: int) -> str:
        topic = self.guide.topics[number - 1]
        ids = [i for i in topic.faq_ids if i in self.snapshot.answers]
        if len(ids) == 1:
            return await self.give_answer(openid, ids[0])
        await self.conversations.put(openid, {"choices": ids, "kind": "topic"})
        return self.say("topic.j2", topic=topic,
                        questions=[self.snapshot.questions[i] for i in ids])

    async def show_topics(self, openid: str, numbers: list[int]) -> str:
        """Several menu topics as one numbered list, under their names (one custom-menu
        button for two groups, e.g. 儿童和养老)."""
        ids: list[str] = []
        groups = []
        for number in numbers:
            topic = self.guide.topics[number - 1]
            listed = []
            for faq_id in topic.faq_ids:
                if faq_id in self.snapshot.answers and faq_id not in ids:
                    ids.append(faq_id)
                    listed.append((len(ids), self.snapshot.questions[faq_id]))
            groups.append({"name": topic.name, "questions": listed})
        await self.conversations.put(openid, {"choices": ids, "kind": "topic"})
        return self.say("topics.j2", groups=[g for g in groups if g["questions"]])

    async def give_answer(self, openid: str, faq_id: str) -> str:
        answer = self.snapshot.answers.get(faq_id)
        if answer is None:
            return self.say("menu.j2")
        await self.conversations.put(openid, {"last_faq": faq_id})
        return answer

    # ----- records ---------------------------------------------------------
    async def _record_asked(self, match: Match, typed: str = "") -> int | None:
        """Store an unanswered question for the inbox (None when it is not stored:
        a message carrying an ID or phone number never is)."""
        if carries_personal_number(typed) or carries_personal_number(match.normalised.text):
            return None
        statement = insert(AskedQuestion).values(
            asked_at=utcnow(),
            text=mask_digits(match.normalised.text)[:200],
            typed=mask_typed(typed)[:200] or None,
            band=REFERRED if match.referral else match.band.value,
            candidates=[{"faq_id": c.faq_id, "score": c.score} for c in match.candidates],
        ).returning(AskedQuestion.id)
        return await self._write_now(lambda conn: conn.scalar(statement))

    async def _record_choice(self, asked_id: Any, chosen: str) -> None:
        if not isinstance(asked_id, int):
            return
        statement = (update(AskedQuestion).where(AskedQuestion.id == asked_id)
                     .values(chosen_faq_id=chosen))
        await self._write_now(lambda conn: conn.execute(statement).rowcount)

    async def _write_now(self, operation: Operation) -> Any:
        """Run ``operation`` committed, batched with other messages' when it can be."""
        if self.writes is not None:
            return await self.writes.now(operation)
        async with self.db.engine.begin() as conn:
            return await conn.run_sync(operation)

    async def _set_following(self, openid: str, following: bool) -> None:
        now = utcnow()
        values: dict[str, Any] = {"openid": openid, "following": following}
        values["subscribed_at" if following else "unsubscribed_at"] = now
        async with self.db.session() as session:
            await upsert(session, Follower, values, key="openid")
