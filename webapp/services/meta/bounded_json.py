"""Parse JSON we did not write with bounds: nesting depth, number size, no NaN or Infinity (promise 39).

Python's json raises RecursionError (not ValueError) on deep nesting, ValueError on an integer of
more than 4300 digits, and turns `1e999` into `inf`, which `json.dumps` then writes as `Infinity`,
which is not JSON. `loads` raises ValueError for the first and reads unusable numbers as null.
"""

from __future__ import annotations

import json

MAX_DEPTH = 64  # Meta's error bodies nest three or four levels; log wrappers add a few more
MAX_INT_DIGITS = 18  # fits a 64-bit integer; Meta's codes, subcodes and ids all do


def nests_deeper_than(text: str, max_depth: int) -> bool:
    """True when arrays and objects in `text` nest more than `max_depth` levels (brackets in strings do not count).

    One pass and no recursion, so a megabyte of `[` costs a fraction of a second.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _int_or_null(digits: str) -> int | None:
    return int(digits) if len(digits.lstrip("-")) <= MAX_INT_DIGITS else None


def _finite_or_null(number: str) -> float | None:
    value = float(number)
    return value if value not in (float("inf"), float("-inf")) else None


def _null(_constant: str) -> None:
    return None  # NaN, Infinity, -Infinity: not JSON, and nothing we could use


def loads(text: str | bytes, max_depth: int = MAX_DEPTH):
    """`json.loads` for untrusted text: ValueError when it is not JSON or nests too deeply.

    Integers longer than 18 digits, floats beyond range and NaN/Infinity are read as None.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if nests_deeper_than(text, max_depth):
        raise ValueError(f"JSON nested more than {max_depth} levels deep")
    try:
        return json.loads(text, parse_int=_int_or_null, parse_float=_finite_or_null, parse_constant=_null)
    except RecursionError as error:  # cannot happen within max_depth; kept so it can never crash a caller
        raise ValueError("JSON nested too deeply") from error
