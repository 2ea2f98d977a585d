"""Read and write the content files under ``content/``.

The files are the release format: ``huimin init`` loads them into the
database, ``huimin content export`` writes the database back out as files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from content import CONTENT_DIR, DICTIONARY_FILE, FAQ_DIR
from content.schema import Dictionary, FaqEntry, Problem, entry_from_data

CATALOGUE_FILE = CONTENT_DIR / "catalogue.yaml"


@dataclass
class ContentFiles:
    """Everything read from a content folder, with the problems met on the way."""

    entries: list[tuple[str, FaqEntry]] = field(default_factory=list)
    dictionary: Dictionary = field(default_factory=Dictionary)
    problems: list[Problem] = field(default_factory=list)


def _read_yaml(path: Path, problems: list[Problem]) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(path), None, f"cannot read: {exc}"))
        return None


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(CONTENT_DIR.parent))
    except ValueError:
        return str(path)


def load_dictionary_data(data: Any, file: str, problems: list[Problem]) -> Dictionary:
    """Validate the parsed dictionary file."""
    if data is None:
        return Dictionary()
    if not isinstance(data, Mapping):
        problems.append(Problem(file, None, "must be a mapping with 'replacements' and 'fillers'"))
        return Dictionary()
    replacements = data.get("replacements") or {}
    fillers = data.get("fillers") or []
    if not isinstance(replacements, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in replacements.items()
    ):
        problems.append(Problem(file, "replacements", "must map words to words"))
        replacements = {}
    if not isinstance(fillers, list) or not all(isinstance(f, str) and f for f in fillers):
        problems.append(Problem(file, "fillers", "must be a list of words"))
        fillers = []
    return Dictionary(replacements=dict(replacements), fillers=tuple(fillers))


def load_content_files(
    faq_dir: Path = FAQ_DIR, dictionary_file: Path = DICTIONARY_FILE
) -> ContentFiles:
    """Read every ``*.yaml`` under ``faq_dir`` and the dictionary file."""
    result = ContentFiles()
    if not faq_dir.is_dir():
        result.problems.append(Problem(str(faq_dir), None, "no such folder"))
    for path in sorted(faq_dir.glob("*.yaml")) if faq_dir.is_dir() else []:
        name = _display(path)
        data = _read_yaml(path, result.problems)
        if data is None:
            continue
        if not isinstance(data, list):
            result.problems.append(Problem(name, None, "must be a list of entries"))
            continue
        for item in data:
            entry, problems = entry_from_data(item, name)
            result.problems += problems
            if entry is not None:
                result.entries.append((name, entry))
    if dictionary_file.is_file():
        data = _read_yaml(dictionary_file, result.problems)
        result.dictionary = load_dictionary_data(data, _display(dictionary_file), result.problems)
    return result


def load_county(path: Path) -> dict[str, Any]:
    """The county's own values (bureau name, hotline, address, hours, payout day)."""
    problems: list[Problem] = []
    data = _read_yaml(path, problems)
    if problems:
        raise ValueError(str(problems[0]))
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: must be a mapping of county values")
    return dict(data)


def catalogue_ids(path: Path = CATALOGUE_FILE) -> list[str]:
    """The stable ids every release must cover."""
    with path.open(encoding="utf-8") as fh:
        return list(yaml.safe_load(fh)["ids"])


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(data: Any) -> str:
    """YAML in the same readable style as the shipped files (block text, UTF-8)."""
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)


def export_content(
    entries: list[tuple[str, FaqEntry]], dictionary: Dictionary, out_dir: Path
) -> list[Path]:
    """Write entries, grouped by the file name each came from, and the dictionary."""
    faq_out = out_dir / "faq"
    faq_out.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for file, entry in entries:
        by_file.setdefault(Path(file).name, []).append(entry.to_data())
    written = []
    for name, items in sorted(by_file.items()):
        path = faq_out / name
        path.write_text(dump_yaml(items), encoding="utf-8")
        written.append(path)
    path = out_dir / "dictionary.yaml"
    path.write_text(dump_yaml({"replacements": dict(dictionary.replacements),
                               "fillers": list(dictionary.fillers)}), encoding="utf-8")
    written.append(path)
    return written
