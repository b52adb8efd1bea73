"""List every promise in docs/promises.md with the tests that name it; exit 1 on a gap.

A test names a promise in its docstring: "Promise 7: ...", "Promises 12-16", "Promise 13/14",
"promises 25 and 26". Run it with `make promises`.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMISES = ROOT / "docs" / "promises.md"
MENTION = re.compile(r"\bpromises?\s+((?:\d+(?:\s*(?:-|–|/|,|and)\s*)?)+)", re.IGNORECASE)


def promise_titles(text: str) -> dict[int, str]:
    return {int(n): title.strip() for n, title in re.findall(r"^(\d+)\.\s+\*\*(.+?)\*\*", text, re.MULTILINE)}


def numbers_in(mention: str) -> set[int]:
    found: set[int] = set()
    for part in re.split(r"\s*(?:/|,|and)\s*", mention.strip()):
        if "-" in part or "–" in part:
            low, high = re.split(r"\s*[-–]\s*", part)[:2]
            if low.isdigit() and high.isdigit():
                found.update(range(int(low), int(high) + 1))
        elif part.strip().isdigit():
            found.add(int(part))
    return found


def tests_by_promise(tests_dir: Path) -> dict[int, list[str]]:
    covered: dict[int, list[str]] = defaultdict(list)
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                doc = ast.get_docstring(node) or ""
                for match in MENTION.finditer(doc):
                    for number in numbers_in(match.group(1)):
                        covered[number].append(f"{path.relative_to(ROOT)}::{node.name}")
    return covered


def main() -> int:
    if not PROMISES.exists():
        print(f"Cannot read {PROMISES}: the promise list is part of this repository.")
        return 2
    titles = promise_titles(PROMISES.read_text())
    covered = tests_by_promise(ROOT / "tests")
    gaps = []
    for number, title in sorted(titles.items()):
        tests = sorted(set(covered.get(number, [])))
        print(f"{number:>2}. {title}")
        for test in tests:
            print(f"      {test}")
        if not tests:
            print("      (no test names this promise)")
            gaps.append(number)
    print()
    print(f"{len(titles) - len(gaps)} of {len(titles)} promises have at least one test naming them.")
    if gaps:
        print("Gaps: " + ", ".join(map(str, gaps)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
