"""The shape of FAQ content and the rules every release must pass.

``check`` is what both ``huimin content check`` and (later) the admin UI run:
each problem names the file and the entry it belongs to.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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

    replacements: Mapping[str, str] = dataclasses.field(default_factory=dict)
    fillers: tuple[str, ...] = ()


# What each problem ``code`` says in English (``huimin content check`` prints these); a UI
# words the same codes in its own language from ``field`` and ``params``.
MESSAGES: dict[str, str] = {
    "entry_not_mapping": "each entry must be a mapping of fields",
    "missing_field": "missing field '{field}'",
    "unknown_field": "unknown field '{field}'",
    "bad_id": "id must be lower-case words joined by '-'",
    "not_a_list": "'{field}' must be a list of texts",
    "bad_date": "'reviewed' must be a date like 2026-11-28",
    "id_used": "id already used in {other_file}",
    "too_few_alternatives": "needs at least {least} alternative phrasings, has {has}",
    "empty_phrasing": "empty phrasing {phrasing!r}",
    "phrasing_shared": "phrasing {phrasing!r} is also used by {owner}",
    "phrasing_repeated": "phrasing {phrasing!r} repeated",
    "placeholder_refused": "{field} has a placeholder that is not allowed: {shown}; "
                           "allowed are {allowed}",
    "placeholder_missing": "{field} uses county.{name} but the county file has no value "
                           "'{name}'",
    "too_long": "{field} is {length} characters, the limit is {limit}",
    "catalogue_missing": "catalogue entry is missing",
    "replacement_unchanged": "a replacement must change the word",
    "dictionary_not_mapping": "must be a mapping with 'replacements' and 'fillers'",
    "replacements_not_words": "must map words to words",
    "fillers_not_words": "must be a list of words",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the content, located by file and entry.

    ``message`` is the English sentence; ``code`` (a key of ``MESSAGES``, or "" for a
    problem only ever shown as its message), ``field`` (the entry's field it is about)
    and ``params`` (the values in the message) let a UI say it its own way."""

    file: str
    entry: str | None
    message: str
    code: str = ""
    field: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        where = f"{self.file}: {self.entry}" if self.entry else self.file
        return f"{where}: {self.message}"


def problem(file: str, entry: str | None, code: str, field: str | None = None,
            **params: Any) -> Problem:
    """A ``Problem`` of kind ``code``, its English message made from ``MESSAGES``."""
    return Problem(file, entry, MESSAGES[code].format(field=field, **params), code, field,
                   params)


def text_key(text: str) -> str:
    """Compare phrasings ignoring width, case, punctuation and spaces."""
    return _TEXT_KEY.sub("", unicodedata.normalize("NFKC", text).lower())


def entry_from_data(data: Any, file: str) -> tuple[FaqEntry | None, list[Problem]]:
    """Build an entry from one parsed mapping, or report why not."""
    if not isinstance(data, Mapping):
        return None, [problem(file, None, "entry_not_mapping")]
    entry_id = str(data.get("id") or "") or None
    problems = [problem(file, entry_id, "missing_field", key)
                for key in REQUIRED if data.get(key) in (None, "", [])]
    unknown = set(data) - set(REQUIRED) - {"details"}
    problems += [problem(file, entry_id, "unknown_field", key) for key in sorted(unknown)]
    if problems:
        return None, problems
    if not ID_PATTERN.match(str(data["id"])):
        problems.append(problem(file, entry_id, "bad_id", "id"))
    for key in ("alternatives", "keywords"):
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                  for v in value):
            problems.append(problem(file, entry_id, "not_a_list", key))
    reviewed = data["reviewed"]
    if isinstance(reviewed, str):
        try:
            reviewed = date.fromisoformat(reviewed)
        except ValueError:
            problems.append(problem(file, entry_id, "bad_date", "reviewed"))
    elif not isinstance(reviewed, date):
        problems.append(problem(file, entry_id, "bad_date", "reviewed"))
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


def placeholder_problems(label: str, text: str, county: Mapping[str, Any], file: str = "",
                         entry: str | None = None) -> list[Problem]:
    """What in an answer (``label`` 'answer' or 'details') cannot be filled in."""
    refused, missing = bad_placeholders(text, county)
    problems = [problem(file, entry, "placeholder_refused", label, shown=shown,
                        allowed=allowed_list()) for shown in refused]
    problems += [problem(file, entry, "placeholder_missing", label, name=name)
                 for name in missing]
    return problems


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
            problems.append(problem(file, entry.id, "id_used", "id",
                                    other_file=seen_ids[entry.id]))
            continue
        seen_ids[entry.id] = file
        if len(entry.alternatives) < MIN_ALTERNATIVES:
            problems.append(problem(file, entry.id, "too_few_alternatives", "alternatives",
                                    least=MIN_ALTERNATIVES, has=len(entry.alternatives)))
        own: set[str] = set()
        for phrasing in (entry.question, *entry.alternatives):
            # An alternative written exactly as the question is shown at the question.
            place = "question" if phrasing == entry.question else "alternatives"
            key = text_key(phrasing)
            if not key:
                problems.append(problem(file, entry.id, "empty_phrasing", place,
                                        phrasing=phrasing))
                continue
            owner = phrasing_owner.get(key)
            if owner is not None and owner != entry.id:
                problems.append(problem(file, entry.id, "phrasing_shared", place,
                                        phrasing=phrasing, owner=owner))
            elif key in own:
                problems.append(problem(file, entry.id, "phrasing_repeated", place,
                                        phrasing=phrasing))
            own.add(key)
            phrasing_owner[key] = entry.id
        for label, written, limit in (("answer", entry.answer, ANSWER_MAX_CHARS),
                                      ("details", entry.details, DETAILS_MAX_CHARS)):
            if written is None:
                continue
            bad = placeholder_problems(label, written, county, file, entry.id)
            if bad:
                problems += bad
                continue
            text = render(written, county)
            if len(text) > limit:
                problems.append(problem(file, entry.id, "too_long", label, length=len(text),
                                        limit=limit))
    for missing in sorted(set(required_ids) - set(seen_ids)):
        problems.append(problem("content/faq", missing, "catalogue_missing"))
    if dictionary is not None:
        for term, replacement in dictionary.replacements.items():
            if not term or term == replacement:
                problems.append(problem("content/dictionary.yaml", term,
                                        "replacement_unchanged"))
    return problems
