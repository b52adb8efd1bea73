"""Bounded JSON parsing for text we did not write (promise 39)."""

from __future__ import annotations

import pytest

from webapp.services.meta import bounded_json


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 65 + "1" + "}" * 65, "[" * 65 + "]" * 65])
def test_nesting_deeper_than_the_limit_is_a_value_error(text):
    """Promise 39: Python's json would raise RecursionError (not ValueError) for the first."""
    with pytest.raises(ValueError, match="nested"):
        bounded_json.loads(text)


def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_fine():
    """Promise 39: the depth count skips strings, escaped quotes included."""
    assert bounded_json.loads("[" * 64 + "]" * 64)
    assert bounded_json.loads('{"a": "' + "[" * 500 + '\\"{{{"}') == {"a": "[" * 500 + '"{{{'}


def test_numbers_json_cannot_represent_are_read_as_none():
    """Promise 39: 1e999 is not inf, NaN is not NaN, a 5000-digit integer is not a ValueError."""
    text = '{"inf": 1e999, "ninf": -1e999, "nan": NaN, "inf2": Infinity, "big": ' + "9" * 5000 + ', "ok": -12}'
    assert bounded_json.loads(text) == {"inf": None, "ninf": None, "nan": None, "inf2": None, "big": None, "ok": -12}


def test_bytes_that_are_not_utf8_are_a_value_error():
    with pytest.raises(ValueError):
        bounded_json.loads(b'{"a": "\xff"}')
