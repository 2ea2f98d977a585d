"""Import directions between the packages: notify never reaches into bot or admin, and
content and the shared core never into the apps (huimin's CLI and model registry wire
everything together, so they are the exceptions)."""

from __future__ import annotations

import ast
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
