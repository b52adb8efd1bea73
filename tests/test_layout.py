"""The README's "Where things live" table reads straight off the tree: every row exists, every room has a row."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layout_rows() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]


def test_every_path_in_the_layout_table_exists():
    missing = [path for path in _layout_rows() if not (ROOT / path).exists()]
    assert missing == []


def test_every_module_and_package_has_a_row():
    named = set(_layout_rows())
    rooms = [p for p in (ROOT / "webapp").iterdir() if p.name != "__pycache__" and p.name != "__init__.py"]
    services = ROOT / "webapp" / "services"
    rooms += [p for p in services.rglob("*.py") if p.name != "__init__.py"]
    unnamed = []
    for path in rooms:
        relative = path.relative_to(ROOT).as_posix() + ("/" if path.is_dir() else "")
        if relative not in named and relative != "webapp/services/":
            unnamed.append(relative)
    assert sorted(unnamed) == []
