"""Request bodies of the Platform API: JSON only, read with bounds, anything else a clear 4xx (promise 39).

webargs reads a body with plain `json.loads`: JSON nested a few thousand levels deep raises
RecursionError and an integer of more than 4300 digits ValueError (both a 500), NaN and Infinity
(not JSON) come through as numbers, and an empty body reads as "no body", which a schema whose
fields are all optional takes for `{}`. Our blueprints read bodies with this parser instead.
"""

from __future__ import annotations

import json

from flask import Request, abort
from flask_smorest import Blueprint
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from webapp.services.meta.bounded_json import MAX_DEPTH, MAX_INT_DIGITS, nests_deeper_than

NOT_JSON = "The body must be a JSON object, sent with Content-Type: application/json."


def _whole_number(digits: str) -> int | float:
    """An integer as an int; a longer one than any field of ours takes as a float, which integer fields refuse.

    Not an error of the whole body: a field we ignore may hold any number.
    """
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        return float(digits)  # inf beyond float's range: still refused by every integer field, never a 500
    return int(digits)


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def read_json(raw: bytes) -> object:
    """The body's JSON value; ValueError saying why when it is empty, not JSON, too deep or has unusable numbers."""
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if not text.strip():
        raise ValueError("it is empty")
    if nests_deeper_than(text, MAX_DEPTH):
        raise ValueError(f"it nests more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text, parse_int=_whole_number, parse_constant=_not_json)
    except json.JSONDecodeError as error:
        raise ValueError(f"it is not JSON ({error.msg} at character {error.pos})") from None
    except RecursionError:  # cannot happen within MAX_DEPTH; kept so that it can never be a 500
        raise ValueError("it nests too deeply") from None


class ApiArgumentsParser(FlaskParser):
    """webargs' parser, with JSON bodies read by `read_json`: a 415 for another type, a 400 saying what is wrong."""

    def load_json(self, req: Request, schema) -> object:
        if not is_json_request(req):
            abort(415, description=NOT_JSON)
        try:
            return read_json(req.get_data(cache=True))
        except ValueError as error:
            abort(400, description=f"The body could not be read as JSON: {error}.")
        return core.missing  # not reached: abort raises


class ApiBlueprint(Blueprint):
    """flask-smorest's Blueprint reading its bodies with ApiArgumentsParser."""

    ARGUMENTS_PARSER = ApiArgumentsParser()
