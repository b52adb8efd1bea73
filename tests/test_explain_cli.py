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
