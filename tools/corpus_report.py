"""`make corpus`: how the classifier names Meta's real errors, per cause (tests/corpus/*.jsonl).

Each case is an error someone met in public (issue trackers, SDK fixtures, Meta's docs), with its
source and the cause a person reading it would name. The report prints, per expected cause, how many
are named right and how many get "must the merchant reconnect?" right; then every miss.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "tests" / "corpus"


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    raw: str
    expected_cause: str
    needs_reconnect: bool
    path: str
    why: str


def load_cases(folder: Path = CORPUS) -> list[Case]:
    cases = []
    for file in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = json.loads(line)
            try:
                cases.append(Case(**{name: fields[name] for name in Case.__dataclass_fields__}))
            except KeyError as missing:
                raise SystemExit(f"{file.name}:{number}: missing field {missing}") from None
    return cases


def main() -> int:
    from webapp.services.connections.diagnosis import explain_error

    cases = load_cases()
    if not cases:
        print(f"No cases in {CORPUS}.")
        return 1
    total, named, reconnect = Counter(), Counter(), Counter()
    misses = []
    for case in cases:
        answer = explain_error(case.raw)
        total[case.expected_cause] += 1
        named[case.expected_cause] += answer["cause"] == case.expected_cause
        reconnect[case.expected_cause] += answer["needs_reconnect"] == case.needs_reconnect
        if answer["cause"] != case.expected_cause or answer["needs_reconnect"] != case.needs_reconnect:
            misses.append((case, answer))
    print(f"{'expected cause':<26}{'cases':>6}{'named right':>13}{'reconnect right':>17}")
    for cause in sorted(total):
        print(f"{cause:<26}{total[cause]:>6}{named[cause]:>13}{reconnect[cause]:>17}")
    count = sum(total.values())
    print(
        f"{'all':<26}{count:>6}{sum(named.values()):>13}{sum(reconnect.values()):>17}   "
        f"named right {sum(named.values()) / count:.1%}, reconnect right {sum(reconnect.values()) / count:.1%}"
    )
    if misses:
        print("\nMisses:")
        for case, answer in misses:
            print(f"  {case.id}: expected {case.expected_cause}, got {answer['cause']}  ({case.source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
