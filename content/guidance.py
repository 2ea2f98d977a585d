"""What the bot knows beyond the FAQ entries: life situations that point to a
programme (``content/situations.yaml``), business that belongs elsewhere, in
another office or elsewhere in the bureau (``content/referrals.yaml``), and the
kinds of question people ask (``content/asks.yaml``).

All are data editors extend; :func:`load_guidance` reads and checks them, and
every problem names its file and item, as ``content.schema.check`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from content import CONTENT_DIR
from content.load import _read_yaml
from content.schema import Problem

SITUATIONS_FILE = CONTENT_DIR / "situations.yaml"
REFERRALS_FILE = CONTENT_DIR / "referrals.yaml"
ASKS_FILE = CONTENT_DIR / "asks.yaml"
MAX_OFFER = 3


@dataclass(frozen=True)
class Situation:
    """A life situation people describe instead of naming a programme."""

    name: str
    cues: tuple[str, ...]  # words that describe it ("没儿没女", "瘫在床上")
    means: tuple[str, ...]  # the programme words it stands for ("特困")
    offer: tuple[str, ...] = ()  # FAQ ids to offer when nothing fits better


@dataclass(frozen=True)
class Limit:
    """Who an entry is for, by a number a message gives: an age (…岁) or a
    disability grade (…级). A message whose numbers of that kind all fall outside
    ``low..high`` does not get the entry, unless it names one of its keywords."""

    faq_id: str
    kind: str  # one of NUMBER_KINDS
    low: int
    high: int


NUMBER_KINDS = ("age", "grade")


@dataclass(frozen=True)
class Referral:
    """Business the FAQ does not answer, and the office to ask."""

    office: str
    terms: tuple[str, ...]
    in_bureau: bool  # elsewhere in this bureau (婚姻登记 …), not another department


@dataclass(frozen=True)
class Ask:
    """A kind of question (how to apply, how much, where the money comes), the
    words people ask it with, and the entries that answer that kind."""

    name: str
    cues: tuple[str, ...]
    entries: tuple[str, ...]


@dataclass(frozen=True)
class Guidance:
    situations: tuple[Situation, ...] = ()
    hardship_cues: tuple[str, ...] = ()  # plain hardship that names no situation
    hardship_offer: tuple[str, ...] = ()  # the programmes to offer for it
    referrals: tuple[Referral, ...] = ()
    passing: tuple[str, ...] = ()  # programme words that do not keep a question here
    limits: tuple[Limit, ...] = ()  # who an entry is for, by age or grade
    asks: tuple[Ask, ...] = ()  # kinds of question and the entries answering each
    problems: tuple[Problem, ...] = field(default=(), compare=False)


def _texts(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(v.strip() for v in value)
    return None


def _ids(value: Any, file: str, item: str, known: set[str] | None,
         problems: list[Problem]) -> tuple[str, ...]:
    ids = _texts(value or [])
    if ids is None:
        problems.append(Problem(file, item, "'offer' must be a list of FAQ ids"))
        return ()
    if len(ids) > MAX_OFFER:
        problems.append(Problem(file, item, f"'offer' has {len(ids)} ids, at most {MAX_OFFER}"))
    for faq_id in ids:
        if known is not None and faq_id not in known:
            problems.append(Problem(file, item, f"'offer' names {faq_id}, which is no FAQ id"))
    return ids[:MAX_OFFER]


def situations_from_data(data: Any, file: str, known_ids: Iterable[str] | None = None,
                         ) -> tuple[tuple[Situation, ...], tuple[str, ...], tuple[str, ...],
                                    list[Problem]]:
    """Situations, hardship cues and hardship offer from a parsed situations file."""
    known = set(known_ids) if known_ids is not None else None
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        return (), (), (), [Problem(file, None, "must be a mapping with 'situations' and "
                                                "'hardship'")]
    situations = []
    items = data.get("situations") or []
    if not isinstance(items, list):
        problems.append(Problem(file, "situations", "must be a list of situations"))
        items = []
    cue_owner: dict[str, str] = {}
    for number, item in enumerate(items, start=1):
        if not isinstance(item, Mapping) or not str(item.get("name") or "").strip():
            problems.append(Problem(file, f"situation {number}", "needs a 'name'"))
            continue
        name = str(item["name"]).strip()
        if any(s.name == name for s in situations):
            problems.append(Problem(file, name, "two situations have this name"))
        cues, means = _texts(item.get("cues")), _texts(item.get("means"))
        if not cues:
            problems.append(Problem(file, name, "'cues' must be a list of words"))
        for cue in cues or ():
            if cue in cue_owner:
                owner = cue_owner[cue]
                problems.append(Problem(file, name, f"cue {cue!r} is listed twice"
                                        if owner == name else f"cue {cue!r} is also {owner}'s"))
            cue_owner[cue] = name
        if not means:
            problems.append(Problem(file, name, "'means' must be a list of programme words"))
        offer = _ids(item.get("offer"), file, name, known, problems)
        if cues and means:
            situations.append(Situation(name, cues, means, offer))
    hardship = data.get("hardship") or {}
    if not isinstance(hardship, Mapping):
        problems.append(Problem(file, "hardship", "must be a mapping with 'cues' and 'offer'"))
        hardship = {}
    cues = _texts(hardship.get("cues") or [])
    if cues is None:
        problems.append(Problem(file, "hardship", "'cues' must be a list of words"))
    offer = _ids(hardship.get("offer"), file, "hardship", known, problems)
    return tuple(situations), cues or (), offer, problems


def limits_from_data(data: Any, file: str, known_ids: Iterable[str] | None = None,
                     ) -> tuple[tuple[Limit, ...], list[Problem]]:
    """``numbers`` of a parsed situations file: ``{faq, age|grade: [low, high]}`` items."""
    if not isinstance(data, Mapping) or data.get("numbers") is None:
        return (), []
    items = data["numbers"]
    if not isinstance(items, list):
        return (), [Problem(file, "numbers", "must be a list of {faq, age or grade}")]
    known = set(known_ids) if known_ids is not None else None
    limits, problems = [], []
    for number, item in enumerate(items, start=1):
        where = f"numbers {number}"
        faq_id = str(item.get("faq") or "").strip() if isinstance(item, Mapping) else ""
        kinds = [k for k in NUMBER_KINDS if isinstance(item, Mapping) and k in item]
        if not faq_id or len(kinds) != 1:
            problems.append(Problem(file, where, "needs 'faq' and one of 'age' or 'grade'"))
            continue
        if known is not None and faq_id not in known:
            problems.append(Problem(file, where, f"'faq' names {faq_id}, which is no FAQ id"))
        bounds = item[kinds[0]]
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
                or bounds[0] > bounds[1]):
            problems.append(Problem(file, where, f"'{kinds[0]}' must be [lowest, highest]"))
            continue
        if any(x.faq_id == faq_id and x.kind == kinds[0] for x in limits):
            problems.append(Problem(file, where, f"{faq_id} has two {kinds[0]} limits"))
            continue
        limits.append(Limit(faq_id, kinds[0], bounds[0], bounds[1]))
    return tuple(limits), problems


def referrals_from_data(data: Any, file: str) -> tuple[tuple[Referral, ...], list[Problem]]:
    """Referrals from a parsed referrals file: ``other_departments`` and ``in_bureau``,
    each a list of ``{office, terms}``. A term may belong to one office only.
    (``passing`` is read by :func:`passing_from_data`.)"""
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        return (), [Problem(file, None, "must be a mapping with 'other_departments' and "
                                        "'in_bureau'")]
    referrals, owner = [], {}
    for section, in_bureau in (("other_departments", False), ("in_bureau", True)):
        items = data.get(section) or []
        if not isinstance(items, list):
            problems.append(Problem(file, section, "must be a list of offices"))
            continue
        for number, item in enumerate(items, start=1):
            office = str(item.get("office") or "").strip() if isinstance(item, Mapping) else ""
            if not office:
                problems.append(Problem(file, f"{section} {number}", "needs an 'office'"))
                continue
            terms = _texts(item.get("terms"))
            if not terms:
                problems.append(Problem(file, office, "'terms' must be a list of words"))
                continue
            for term in terms:
                if term in owner and owner[term] != office:
                    problems.append(Problem(file, office,
                                            f"term {term!r} is also {owner[term]}'s"))
                owner.setdefault(term, office)
            referrals.append(Referral(office, terms, in_bureau))
    return tuple(referrals), problems


def passing_from_data(data: Any, file: str) -> tuple[tuple[str, ...], list[Problem]]:
    """The programme words that name only where money arrives or the bureau itself."""
    if not isinstance(data, Mapping) or data.get("passing") is None:
        return (), []
    words = _texts(data["passing"])
    if words is None:
        return (), [Problem(file, "passing", "must be a list of words")]
    return words, []


def asks_from_data(data: Any, file: str, known_ids: Iterable[str] | None = None,
                   ) -> tuple[tuple[Ask, ...], list[Problem]]:
    """Kinds of question from a parsed asks file: ``asks: [{name, cues, entries}]``."""
    items = data.get("asks") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        return (), [Problem(file, "asks", "must be a list of {name, cues, entries}")]
    known = set(known_ids) if known_ids is not None else None
    asks: list[Ask] = []
    problems: list[Problem] = []
    for number, item in enumerate(items, start=1):
        name = str(item.get("name") or "").strip() if isinstance(item, Mapping) else ""
        if not name:
            problems.append(Problem(file, f"ask {number}", "needs a 'name'"))
            continue
        cues, entries = _texts(item.get("cues")), _texts(item.get("entries"))
        if not cues:
            problems.append(Problem(file, name, "'cues' must be a list of words"))
        if not entries:
            problems.append(Problem(file, name, "'entries' must be a list of FAQ ids"))
        for faq_id in entries or ():
            if known is not None and faq_id not in known:
                problems.append(Problem(file, name, f"'entries' names {faq_id}, "
                                                    "which is no FAQ id"))
        if cues and entries:
            asks.append(Ask(name, cues, entries))
    return tuple(asks), problems


def load_guidance(situations_file: Path = SITUATIONS_FILE,
                  referrals_file: Path = REFERRALS_FILE,
                  known_ids: Iterable[str] | None = None,
                  asks_file: Path = ASKS_FILE) -> Guidance:
    """Read the three files; a missing or broken file gives no data and a problem."""
    problems: list[Problem] = []
    situations, cues, offer = (), (), ()
    referrals: tuple[Referral, ...] = ()
    passing: tuple[str, ...] = ()
    limits: tuple[Limit, ...] = ()
    asks: tuple[Ask, ...] = ()
    known_ids = list(known_ids) if known_ids is not None else None
    if situations_file.is_file():
        data = _read_yaml(situations_file, problems)
        if data is not None:
            situations, cues, offer, found = situations_from_data(
                data, situations_file.name, known_ids)
            limits, more = limits_from_data(data, situations_file.name, known_ids)
            problems += found + more
    if referrals_file.is_file():
        data = _read_yaml(referrals_file, problems)
        if data is not None:
            referrals, found = referrals_from_data(data, referrals_file.name)
            passing, more = passing_from_data(data, referrals_file.name)
            problems += found + more
    if asks_file.is_file():
        data = _read_yaml(asks_file, problems)
        if data is not None:
            asks, found = asks_from_data(data, asks_file.name, known_ids)
            problems += found
    return Guidance(situations, cues, offer, referrals, passing, limits, asks,
                    tuple(problems))
