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
from content.schema import Dictionary, FaqEntry, Problem, entry_from_data, problem

CATALOGUE_FILE = CONTENT_DIR / "catalogue.yaml"
MAX_FILE_BYTES = 1024 * 1024  # the shipped files are under 20 KB each
MAX_DEPTH = 20  # lists and mappings inside each other; an entry needs three


class ContentYamlError(ValueError):
    """A content file that is refused before (or while) it is read.

    ``kind``: 'size', 'alias' (anchors and aliases), 'depth', 'value' (a value YAML
    cannot build, such as the date 2026-13-45) or 'syntax'; ``line`` counts from 1."""

    def __init__(self, kind: str, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.kind = kind
        self.line = line


# libyaml when it is there (about ten times faster than the pure-Python parser).
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENING = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSING = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


class _ContentLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """yaml's safe loader; a value it cannot build is a ContentYamlError with its line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            if isinstance(exc, ContentYamlError):
                raise
            raise ContentYamlError("value", f"cannot read the value {_shown(node)}: {exc}",
                                   node.start_mark.line + 1) from exc


def _refuse_anchors_and_depth(text: str) -> None:
    """Walk the parser's events once, before anything is built: the first anchor or
    alias, or nesting deeper than MAX_DEPTH, stops it.

    A few kilobytes of aliases can stand for gigabytes once anything walks the result
    (the "billion laughs"); content files never need them."""
    loader = _ContentLoader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1 if event.start_mark else None
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ContentYamlError(
                    "alias", "anchors and aliases (&name, *name) are not allowed in content "
                             "files: write the text out", line)
            if isinstance(event, _OPENING):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ContentYamlError(
                        "depth", f"nested more than {MAX_DEPTH} levels deep", line)
            elif isinstance(event, _CLOSING):
                depth -= 1
    finally:
        loader.dispose()


def _shown(node: yaml.Node) -> str:
    value = node.value if isinstance(node.value, str) else ""
    return repr(value if len(value) <= 40 else value[:39] + "…")


def parse_content_yaml(text: str) -> Any:
    """Parse one content file's text (at most MAX_FILE_BYTES, no anchors or aliases)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise ContentYamlError("size", f"the file is {size} bytes, the limit is "
                                       f"{MAX_FILE_BYTES}")
    try:
        _refuse_anchors_and_depth(text)
        loader = _ContentLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise ContentYamlError("syntax", message or "not valid YAML",
                               mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise ContentYamlError("syntax", str(exc)) from exc


def read_content_file(path: Path) -> Any:
    """Read and parse one content file, refusing one larger than MAX_FILE_BYTES unread."""
    with path.open("rb") as fh:
        raw = fh.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ContentYamlError("size", f"the file is larger than {MAX_FILE_BYTES} bytes")
    return parse_content_yaml(raw.decode("utf-8-sig"))


@dataclass
class ContentFiles:
    """Everything read from a content folder, with the problems met on the way."""

    entries: list[tuple[str, FaqEntry]] = field(default_factory=list)
    dictionary: Dictionary = field(default_factory=Dictionary)
    problems: list[Problem] = field(default_factory=list)


def _read_yaml(path: Path, problems: list[Problem]) -> Any:
    try:
        return read_content_file(path)
    except (OSError, ContentYamlError, UnicodeDecodeError) as exc:
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
        problems.append(problem(file, None, "dictionary_not_mapping"))
        return Dictionary()
    replacements = data.get("replacements") or {}
    fillers = data.get("fillers") or []
    if not isinstance(replacements, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in replacements.items()
    ):
        problems.append(problem(file, "replacements", "replacements_not_words"))
        replacements = {}
    if not isinstance(fillers, list) or not all(isinstance(f, str) and f for f in fillers):
        problems.append(problem(file, "fillers", "fillers_not_words"))
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
