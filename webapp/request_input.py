"""Read numbers from the URL so that no value can reach the database out of range (promise 39).

PostgreSQL refuses an id beyond its `integer` column and an OFFSET beyond `bigint`; the error would
surface as a 500. Ids in paths are matched by a converter that knows the column's range, and page
numbers go through one parser, so a view never hands the database a number it cannot hold.
"""

from __future__ import annotations

import re

from flask import Flask, abort, request
from werkzeug.routing import IntegerConverter, ValidationError

DATABASE_ID_MAX = 2**31 - 1  # every id column is PostgreSQL's `integer`
# Far past any list we keep, and small enough that page x page size fits any database's OFFSET.
MAX_PAGE = 1_000_000
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


class DatabaseIdConverter(IntegerConverter):
    """`<int:...>` that matches only numbers an id column can hold: anything larger is a 404."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = None, signed=False):
        super().__init__(map, fixed_digits, min, DATABASE_ID_MAX if max is None else max, signed)

    def to_python(self, value: str) -> int:
        if len(value.lstrip("-0")) > len(str(self.max)):
            raise ValidationError()  # never turn thousands of digits into an int just to refuse it
        return super().to_python(value)


def _number_argument(name: str) -> int | None:
    """The query argument `name` as an int, or None when absent or not a plain decimal number.

    A number too long to be any page or id comes back as -1, which every caller refuses.
    """
    raw = request.args.get(name, "").strip()
    if not _WHOLE_NUMBER.fullmatch(raw):
        return None
    if len(raw.lstrip("+-").lstrip("0")) > 18:  # never parse thousands of digits just to refuse them
        return -1
    return int(raw)


def page_number() -> int:
    """The page of a list the query asks for: 1 when absent or not a number, a 404 when no list has it."""
    page = _number_argument("page")
    if page is None:
        return 1
    if not 1 <= page <= MAX_PAGE:
        abort(404, description="There is no such page in this list.")
    return page


def id_argument(name: str, missing: str) -> int | None:
    """An id from the query string: None when absent or not a number, a 404 saying `missing` when no row has it."""
    value = _number_argument(name)
    if value is not None and not 1 <= value <= DATABASE_ID_MAX:
        abort(404, description=missing)
    return value


def register(app: Flask) -> None:
    """Make every `<int:...>` in a route a database id; call before any blueprint is registered."""
    app.url_map.converters["int"] = DatabaseIdConverter
