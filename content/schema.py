"""The shape of FAQ content and the rules every release must pass.

``check`` is what both ``huimin content check`` and (later) the admin UI run:
each problem names the file and the entry it belongs to.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from content.placeholders import allowed_list, bad_placeholders, fill, placeholder

log = logging.getLogger(__name__)

ANSWER_MAX_CHARS = 200
DETAILS_MAX_CHARS = 600
MIN_ALTERNATIVES = 8
ID_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
REQUIRED = ("id", "category", "question", "alternatives", "keywords", "answer", "source",
            "reviewed")
_TEXT_KEY = re.compile(r"[\W_]+", re.UNICODE)

@dataclass(frozen=True)
class FaqEntry:
    """One curated question with its phrasings and answer (text with placeholders)."""

    id: str
    category: str
    question: str
    alternatives: tuple[str, ...]
    keywords: tuple[str, ...]
    answer: str
    source: str
    reviewed: date
    details: str | None = None

    def to_data(self) -> dict[str, Any]:
        """The entry as written in a content file (key order kept stable)."""
        data: dict[str, Any] = {
            "id": self.id,
            "category": self.category,
            "question": self.question,
            "alternatives": list(self.alternatives),
            "keywords": list(self.keywords),
            "answer": self.answer,
        }
        if self.details:
            data["details"] = self.details
        data["source"] = self.source
        data["reviewed"] = self.reviewed
        return data


@dataclass(frozen=True)
class Dictionary:
    """Colloquial words, dialect and typos mapped to standard words, and filler words."""

    replacements: Mapping[str, str] = field(default_factory=dict)
    fillers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the content, located by file and entry."""

    file: str
    entry: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.entry}" if self.entry else self.file
        return f"{where}: {self.message}"


def text_key(text: str) -> str:
    """Compare phrasings ignoring width, case, punctuation and spaces."""
    return _TEXT_KEY.sub("", unicodedata.normalize("NFKC", text).lower())


def entry_from_data(data: Any, file: str) -> tuple[FaqEntry | None, list[Problem]]:
    """Build an entry from one parsed mapping, or report why not."""
    if not isinstance(data, Mapping):
        return None, [Problem(file, None, "each entry must be a mapping of fields")]
    entry_id = str(data.get("id") or "") or None
    problems = [Problem(file, entry_id, f"missing field '{key}'")
                for key in REQUIRED if data.get(key) in (None, "", [])]
    unknown = set(data) - set(REQUIRED) - {"details"}
    problems += [Problem(file, entry_id, f"unknown field '{key}'") for key in sorted(unknown)]
    if problems:
        return None, problems
    if not ID_PATTERN.match(str(data["id"])):
        problems.append(Problem(file, entry_id, "id must be lower-case words joined by '-'"))
    for key in ("alternatives", "keywords"):
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                  for v in value):
            problems.append(Problem(file, entry_id, f"'{key}' must be a list of texts"))
    reviewed = data["reviewed"]
    if isinstance(reviewed, str):
        try:
            reviewed = date.fromisoformat(reviewed)
        except ValueError:
            problems.append(Problem(file, entry_id, "'reviewed' must be a date like 2026-11-28"))
    elif not isinstance(reviewed, date):
        problems.append(Problem(file, entry_id, "'reviewed' must be a date like 2026-11-28"))
    if problems:
        return None, problems
    entry = FaqEntry(
        id=str(data["id"]),
        category=str(data["category"]).strip(),
        question=str(data["question"]).strip(),
        alternatives=tuple(a.strip() for a in data["alternatives"]),
        keywords=tuple(k.strip() for k in data["keywords"]),
        answer=str(data["answer"]).strip(),
        details=(str(data["details"]).strip() or None) if data.get("details") else None,
        source=str(data["source"]).strip(),
        reviewed=reviewed,
    )
    return entry, []


def render(text: str, county: Mapping[str, Any]) -> str:
    """An answer or details as users see them: the county's values filled in.

    Nothing in ``text`` is evaluated (see content.placeholders). Text the publish check
    would refuse (stored before the check existed, or not through it) is shown as
    written, with a warning in the log."""
    if "{" in text:
        refused, missing = bad_placeholders(text, county)
        for shown in [*refused, *map(placeholder, missing)]:
            log.warning("an answer holds %r, which is not a placeholder that can be filled "
                        "in: it is shown as written; correct it in the staff UI", shown)
    return fill(text, county)


def placeholder_problems(label: str, text: str, county: Mapping[str, Any]) -> list[str]:
    """Messages for what in an answer (``label`` 'answer' or 'details') cannot be filled in."""
    refused, missing = bad_placeholders(text, county)
    messages = [f"{label} has a placeholder that is not allowed: {shown}; allowed are "
                f"{allowed_list()}" for shown in refused]
    messages += [f"{label} uses county.{name} but the county file has no value '{name}'"
                 for name in missing]
    return messages


def check(
    located: Iterable[tuple[str, FaqEntry]],
    county: Mapping[str, Any],
    dictionary: Dictionary | None = None,
    required_ids: Iterable[str] = (),
) -> list[Problem]:
    """Every rule a content release must satisfy; an empty list means it is fine."""
    problems: list[Problem] = []
    seen_ids: dict[str, str] = {}
    phrasing_owner: dict[str, str] = {}
    for file, entry in located:
        if entry.id in seen_ids:
            problems.append(Problem(file, entry.id, f"id already used in {seen_ids[entry.id]}"))
            continue
        seen_ids[entry.id] = file
        if len(entry.alternatives) < MIN_ALTERNATIVES:
            problems.append(Problem(
                file, entry.id,
                f"needs at least {MIN_ALTERNATIVES} alternative phrasings, has "
                f"{len(entry.alternatives)}"))
        own: set[str] = set()
        for phrasing in (entry.question, *entry.alternatives):
            key = text_key(phrasing)
            if not key:
                problems.append(Problem(file, entry.id, f"empty phrasing {phrasing!r}"))
                continue
            owner = phrasing_owner.get(key)
            if owner is not None and owner != entry.id:
                problems.append(Problem(file, entry.id,
                                        f"phrasing {phrasing!r} is also used by {owner}"))
            elif key in own:
                problems.append(Problem(file, entry.id, f"phrasing {phrasing!r} repeated"))
            own.add(key)
            phrasing_owner[key] = entry.id
        for label, written, limit in (("answer", entry.answer, ANSWER_MAX_CHARS),
                                      ("details", entry.details, DETAILS_MAX_CHARS)):
            if written is None:
                continue
            bad = placeholder_problems(label, written, county)
            if bad:
                problems += [Problem(file, entry.id, message) for message in bad]
                continue
            text = render(written, county)
            if len(text) > limit:
                problems.append(Problem(
                    file, entry.id,
                    f"{label} is {len(text)} characters, the limit is {limit}"))
    for missing in sorted(set(required_ids) - set(seen_ids)):
        problems.append(Problem("content/faq", missing, "catalogue entry is missing"))
    if dictionary is not None:
        for term, replacement in dictionary.replacements.items():
            if not term or term == replacement:
                problems.append(Problem("content/dictionary.yaml", term,
                                        "a replacement must change the word"))
    return problems
