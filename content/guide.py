"""The fixed parts of the conversation, as data: menu topics and clicks
(``content/menu.yaml``), intents, domain words and programmes (``content/intents.yaml``),
and situations and referrals (``content.guidance``).

The bot builds its matcher from a ``Guide`` (``bot.dialog.matcher_for``); the staff UI
reads the same guide for its try-out box and labels.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from content import INTENTS_FILE, MENU_FILE
from content.guidance import Guidance, load_guidance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topic:
    """One topic of the numbered menu and the FAQ entries it lists."""

    name: str
    faq_ids: tuple[str, ...]


@dataclass(frozen=True)
class MyStatusAsk:
    """"我的申请到哪一步了": a person asking for their own application's status, told
    apart from asking how to look it up (``my_status`` in content/intents.yaml)."""

    faq_id: str
    asks: tuple[str, ...]
    how_to: tuple[str, ...]

    @classmethod
    def from_yaml(cls, data: Mapping[str, Any] | None) -> MyStatusAsk | None:
        if not data:
            return None
        return cls(str(data["faq"]), tuple(str(w) for w in data.get("asks") or ()),
                   tuple(str(w) for w in data.get("how_to") or ()))

    def asked(self, cleaned: str, answered_with: str | None) -> bool:
        """The matcher would answer with the how-to entry (``answered_with``: the entry
        it answers with, None when it would not answer), and the (cleaned) message asks
        where the application is, not how to find out."""
        return (answered_with == self.faq_id
                and any(w in cleaned for w in self.asks)
                and not any(w in cleaned for w in self.how_to))


@dataclass(frozen=True)
class Guide:
    """The fixed parts of the conversation: menu topics, menu clicks and intents."""

    topics: tuple[Topic, ...]
    clicks: Mapping[str, Mapping[str, Any]]
    wechat_menu: Mapping[str, Any]
    intents: Mapping[str, frozenset[str]]
    other_departments: Mapping[str, str]
    domain_terms: tuple[str, ...]
    programmes: tuple[tuple[str, ...], ...]
    guidance: Guidance = field(default_factory=Guidance)
    answer_first: tuple[tuple[str, ...], ...] = ()
    second_when: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    my_status: MyStatusAsk | None = None

    @classmethod
    def load(cls, menu_file: Path = MENU_FILE, intents_file: Path = INTENTS_FILE,
             guidance: Guidance | None = None) -> Guide:
        """The menu and intents files, and situations and referrals (content.guidance)."""
        menu = yaml.safe_load(menu_file.read_text(encoding="utf-8"))
        intents = yaml.safe_load(intents_file.read_text(encoding="utf-8"))
        if guidance is None:
            guidance = load_guidance()
            for problem in guidance.problems:
                log.warning("content: %s", problem)
        return cls(
            topics=tuple(Topic(t["name"], tuple(t["faq"])) for t in menu["topics"]),
            clicks=menu["clicks"],
            wechat_menu=menu["wechat_menu"],
            intents={k: frozenset(str(v) for v in intents[k])
                     for k in ("greeting", "thanks", "help", "more")},
            other_departments=intents.get("other_departments") or {},
            domain_terms=tuple(intents.get("domain_terms") or ()),
            programmes=tuple(tuple(group) for group in intents.get("programmes") or ()),
            guidance=guidance,
            answer_first=tuple(tuple(p["pair"] if isinstance(p, dict) else p)
                               for p in intents.get("answer_first") or ()),
            second_when={p["pair"][1]: tuple(p.get("second_when") or ())
                         for p in intents.get("answer_first") or () if isinstance(p, dict)},
            my_status=MyStatusAsk.from_yaml(intents.get("my_status")),
        )
