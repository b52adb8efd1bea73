"""Every real-world Meta error in tests/corpus/ is named as a person reading it would (issue 14).

The cases were found in public sources, each with its URL; none was written to fit the classifier.
Cases the classifier does not name right yet are listed in tests/corpus/open_misses.txt and run as
strict expected failures: fixing one makes its test fail until it leaves the list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.corpus_report import CORPUS, load_cases
from webapp.services.connections.causes import CauseId
from webapp.services.connections.diagnosis import explain_error

CASES = load_cases()
# DESIGN.md's ids, all in the catalogue.
DESIGN_CAUSE_IDS = {str(cause) for cause in CauseId}
OPEN_MISSES = (
    {
        line.split("#", 1)[0].strip()
        for line in (Path(CORPUS) / "open_misses.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    }
    if (Path(CORPUS) / "open_misses.txt").exists()
    else set()
)


def test_the_corpus_is_sourced_and_uses_design_ids():
    assert CASES, "tests/corpus/ holds no cases"
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"
    for case in CASES:
        assert case.source.startswith("https://"), case.id
        assert case.expected_cause in DESIGN_CAUSE_IDS, case.id
    assert {case.id for case in CASES} >= OPEN_MISSES, "open_misses.txt names a case that is not in the corpus"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case.id, marks=pytest.mark.xfail(strict=True, reason="issue 14: not named right yet"))
        if case.id in OPEN_MISSES
        else pytest.param(case, id=case.id)
        for case in CASES
    ],
)
def test_each_real_error_is_named_right(case):
    answer = explain_error(case.raw)
    assert (answer["cause"], answer["needs_reconnect"]) == (case.expected_cause, case.needs_reconnect), case.why
