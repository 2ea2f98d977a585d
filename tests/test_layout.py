"""Import directions between the layers: the core (``huimin/`` without its ``wiring/``
folder) at the bottom, ``content`` on it, then ``notify``, then the two apps ``bot`` and
``admin``, and ``huimin/wiring`` (the CLI, the model aggregation, the composition root)
on top of everything. A layer imports only the layers below it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WIRING = ROOT / "huimin" / "wiring"
# Outside the wiring folder but on the top floor all the same: alembic's entry (it loads
# every package's tables through huimin.wiring.models) and the old name of the command.
TOP_FLOOR_ENTRIES = {ROOT / "huimin" / "migrations" / "env.py", ROOT / "huimin" / "cli.py"}

APPS = {"content", "notify", "bot", "admin"}
# layer -> what it may not import ("huimin.wiring" is the top floor)
FORBIDDEN = {
    "core": APPS | {"huimin.wiring"},
    "content": {"notify", "bot", "admin", "huimin.wiring"},
    "notify": {"bot", "admin", "huimin.wiring"},
    "bot": {"admin", "huimin.wiring"},  # the demo mounts the staff UI through the root
    "admin": {"bot", "huimin.wiring"},
    "wiring": set(),
}
# What is still left of an older shape, with the reason; nothing may be added here: the
# staff UI's try-out, inbox and statistics read the bot's matcher and question log.
KNOWN = {
    "admin/tryout.py": {"bot"}, "admin/inbox.py": {"bot"}, "admin/stats.py": {"bot"},
    "admin/answered.py": {"bot"},
}


def layer_of(path: Path) -> str:
    if path.is_relative_to(WIRING) or path in TOP_FLOOR_ENTRIES:
        return "wiring"
    top = path.relative_to(ROOT).parts[0]
    return "core" if top == "huimin" else top


def imported_modules(path: Path) -> set[str]:
    """Every absolute import in ``path``, at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def crossings(path: Path) -> set[str]:
    """The forbidden layers ``path`` imports."""
    forbidden = FORBIDDEN[layer_of(path)]
    return {name for module in imported_modules(path) for name in forbidden
            if module == name or module.startswith(name + ".")}


def python_files() -> list[Path]:
    return sorted(p for top in ("huimin", *sorted(APPS)) for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    offenders = []
    for path in python_files():
        if layer_of(path) != layer:
            continue
        bad = crossings(path) - KNOWN.get(str(path.relative_to(ROOT)), set())
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert offenders == []


def test_the_known_exceptions_are_still_needed() -> None:
    """An exception that is no longer used is removed from KNOWN (it only shrinks)."""
    stale = [name for name, allowed in KNOWN.items()
             if not crossings(ROOT / name) & allowed]
    assert stale == []


def test_the_layers_are_told_apart() -> None:
    """The checks above see real files in every layer (a move that empties one fails)."""
    seen = {layer_of(p) for p in python_files()}
    assert seen == set(FORBIDDEN)
    assert layer_of(WIRING / "cli.py") == "wiring"
    assert layer_of(ROOT / "huimin" / "settings.py") == "core"


def test_the_core_and_the_apps_load_without_the_top_floor() -> None:
    """Importing the apps loads nothing from huimin.wiring (they are handed what they need)."""
    code = ("import sys, bot.app, admin.app, notify.service, content.load; "
            "print(' '.join(m for m in sys.modules if m.startswith('huimin.wiring')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    assert loaded == []


PACKAGES = {"bot", "admin", "notify", "content", "huimin"}


def private_names_taken(path: Path, package: str) -> list[str]:
    """Names starting with '_' that ``path`` imports from another of our packages."""
    taken = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            top = node.module.split(".")[0]
            if top in PACKAGES and top != package:
                taken += [f"{node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_")]
    return taken


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_packages_share_only_public_names(package: str) -> None:
    """What two packages share is public and named (e.g. the row checkers in
    huimin.registry.rows), never another package's private helper."""
    offenders = [f"{path.relative_to(ROOT)} takes {name}"
                 for path in sorted((ROOT / package).rglob("*.py"))
                 for name in private_names_taken(path, package)]
    assert offenders == []


def test_the_admin_base_loads_none_of_the_modules_behind_its_pages() -> None:
    """admin.web (what every page shares) takes its labels from admin.labels, not from
    the modules behind the pages, which themselves build on admin.web."""
    code = ("import sys, admin.web; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('admin.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    assert "admin.labels" in loaded
    assert not {"admin.faq", "admin.registry", "admin.reminders", "admin.stats",
                "admin.inbox"} & set(loaded)
