"""`flask --app wsgi explain-error [--json] [FILE|-]` exactly as DESIGN's stable interface says."""

from __future__ import annotations

import json

import pytest

PASSWORD = '{"error": {"message": "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.", "type": "OAuthException", "code": 190, "error_subcode": 460, "fbtrace_id": "A1"}}'


def test_json_output_from_a_file(runner, tmp_path):
    path = tmp_path / "error.json"
    path.write_text(PASSWORD)
    result = runner.invoke(args=["explain-error", "--json", str(path)])
    assert result.exit_code == 0
    answer = json.loads(result.output)
    assert {"cause", "needs_reconnect", "retryable", "title", "explanation", "checklist", "meta"} <= set(answer)
    assert (answer["cause"], answer["needs_reconnect"], answer["retryable"]) == ("password_changed", True, False)
    assert (
        answer["meta"]["code"] == 190
        and answer["meta"]["subcode"] == 460
        and answer["meta"]["type"] == "OAuthException"
    )
    assert isinstance(answer["checklist"], list) and all(isinstance(step, str) for step in answer["checklist"])


@pytest.mark.parametrize("args", [["explain-error", "--json", "-"], ["explain-error", "--json"]])
def test_reads_stdin(runner, args):
    result = runner.invoke(args=args, input="(#4) Application request limit reached")
    answer = json.loads(result.output)
    assert result.exit_code == 0 and answer["cause"] == "rate_limited" and answer["retryable"] is True


def test_unrecognised_input_is_unknown_with_exit_0(runner):
    result = runner.invoke(args=["explain-error", "--json", "-"], input="nothing to see here")
    answer = json.loads(result.output)
    assert result.exit_code == 0
    assert answer["cause"] == "unknown" and answer["needs_reconnect"] is False
    assert answer["meta"] == {"code": None, "subcode": None, "type": None, "message": None}


def test_unreadable_file_is_exit_2_with_a_sentence(runner, tmp_path):
    result = runner.invoke(args=["explain-error", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    assert "cannot read" in result.output and "missing.json" in result.output


def test_text_output_for_people(runner):
    result = runner.invoke(args=["explain-error", "-"], input=PASSWORD)
    assert result.exit_code == 0
    assert "Cause: password_changed" in result.output and "What to do:" in result.output


# ---- promise 39: whatever is pasted, an answer and never a crash --------------------------------


def _strict_json(text: str) -> dict:
    """Parse output as JSON that refuses Infinity and NaN, which `json.dumps` writes but JSON has not."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"output holds {name}"))


HOSTILE_PASTES = {
    "deeply-nested-array": "[" * 100_000,
    "deeply-nested-object": '{"a":' * 50_000,
    "deep-inside-meta-error": '{"error": {"code": 190, "error_subcode": 460, "x": ' + "[" * 5000 + "}}",
    "deep-error-data-string": '{"error": {"code": 190, "error_data": "' + "[" * 5000 + '"}}',
    "1e999": "1e999",
    "infinite-code": '{"error": {"code": 1e999, "error_subcode": -1e999, "type": 1e999, "message": "x"}}',
    "nan-constants": '{"error": {"code": NaN, "error_subcode": Infinity, "type": "OAuthException", "message": "x"}}',
    "5000-digit-integer": "9" * 5000,
    "5000-digit-code": '{"error": {"code": ' + "9" * 5000 + ', "message": "x"}}',
    "lone-surrogates": '{"error": {"code": 190, "type": "\\udfff", "message": "\\ud800 gone"}}',
    "fields-of-any-type": '{"error": {"code": [190], "error_subcode": {"a": 1}, "type": [1], "message": {"m": 1}}}',
    "json-quoted-in-json-in-json": json.dumps(json.dumps(json.dumps({"error": {"code": 4, "message": "x"}}))),
}


@pytest.mark.parametrize("paste", HOSTILE_PASTES.values(), ids=HOSTILE_PASTES.keys())
@pytest.mark.parametrize("as_file", [False, True], ids=["stdin", "file"])
def test_hostile_input_is_explained_with_exit_0(runner, tmp_path, paste, as_file):
    """Promise 39: deep nesting, huge numbers, NaN and odd types give an answer (often `unknown`), exit 0."""
    if as_file:
        path = tmp_path / "error.json"
        path.write_text(paste, encoding="utf-8", errors="surrogatepass")
        result = runner.invoke(args=["explain-error", "--json", str(path)])
    else:
        result = runner.invoke(args=["explain-error", "--json", "-"], input=paste)
    assert result.exit_code == 0, result.output[-500:]
    answer = _strict_json(result.output)
    assert answer["cause"] in {"unknown", "password_changed", "invalid_token", "rate_limited", "provider_error"}
    for field in ("code", "subcode"):
        assert answer["meta"][field] is None or 0 <= answer["meta"][field] < 2**63
    assert answer["meta"]["type"] is None or isinstance(answer["meta"]["type"], str)


def test_what_can_be_read_is_still_read(runner):
    """Promise 39: a deep branch elsewhere in the paste does not hide Meta's error beside it."""
    paste = '{"error": {"code": 190, "error_subcode": 460, "message": "x", "error_data": "' + "[" * 5000 + '"}}'
    answer = _strict_json(runner.invoke(args=["explain-error", "--json", "-"], input=paste).output)
    assert answer["cause"] == "password_changed" and answer["meta"]["code"] == 190


def test_bytes_that_are_not_utf8_are_read_with_replacements(runner):
    """Promise 39: a log with stray bytes on stdin is explained, not a UnicodeDecodeError."""
    result = runner.invoke(args=["explain-error", "--json", "-"], input=b"\xff\xfe (#4) Application request limit \xc0")
    assert result.exit_code == 0 and _strict_json(result.output)["cause"] == "rate_limited"


def test_a_directory_is_an_unreadable_file_exit_2(runner, tmp_path):
    """Promise 39: a path that cannot be read as a file is exit 2 with a sentence, not a traceback."""
    result = runner.invoke(args=["explain-error", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read" in result.output


@pytest.mark.parametrize("paste", HOSTILE_PASTES.values(), ids=HOSTILE_PASTES.keys())
def test_the_support_explain_page_answers_hostile_pastes(client, auth, paste):
    """Promise 39: the support page gives the same answers as the CLI: a page, never a 500."""
    from tests.factories import make_user

    auth.login_as(make_user(role="support"))
    token = auth.csrf_token("/support/explain")
    response = client.post("/support/explain", data={"csrf_token": token, "raw_error": paste[:20_000]})
    assert response.status_code == 200, response.text[:300]
    assert 'aria-labelledby="answer-title"' in response.text
