"""Import directions between the packages: notify never reaches into bot or admin, and
content and the shared core never into the apps (huimin's CLI and model registry wire
everything together, so they are the exceptions)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "notify": {"bot", "admin"},
    "content": {"bot", "admin", "notify"},
    "huimin": {"bot", "admin"},
}
WIRING = {ROOT / "huimin" / "cli.py", ROOT / "huimin" / "models.py",
          ROOT / "huimin" / "migrations" / "env.py"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_directions(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path in WIRING:
            continue
        bad = imported_packages(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert offenders == []


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
