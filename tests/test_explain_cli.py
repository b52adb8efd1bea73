"""`flask --app wsgi explain-error [--json] [FILE|-]` exactly as DESIGN's stable interface says."""

from __future__ import annotations

import json
import re

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


# ---- issue 15, part 6: the login path's words, and Meta's own words for the owner ----------------

ROLE_LOST = '{"error": {"message": "Error validating access token: The user has not authorized application 1.", "type": "OAuthException", "code": 190, "error_subcode": 492}}'
# A Facebook-shaped token quoted back in Meta's words for the owner: never printed or shown.
QUOTED_TOKEN = "EAAGm0PX4ZCpsBAquotedTokenZBx9ZCW5y2"
WITH_OWNER_WORDS = json.dumps(
    {
        "error": {
            "message": "Error validating access token: The user is enrolled in a blocking, logged-in checkpoint",
            "type": "OAuthException",
            "code": 190,
            "error_subcode": 490,
            "error_user_title": "Confirm your identity",
            "error_user_msg": f"Your session {QUOTED_TOKEN} has ended. Log in to Facebook to confirm it's you.",
        }
    }
)


def test_the_path_option_chooses_the_words(runner):
    from webapp.services.connections.causes import words_for

    answers = {
        path: json.loads(runner.invoke(args=["explain-error", "--json", "--path", path, "-"], input=ROLE_LOST).output)
        for path in ("instagram", "facebook")
    }
    for path, answer in answers.items():
        words = words_for("permissions_changed", path)
        assert (answer["cause"], answer["path"]) == ("permissions_changed", path)
        assert (answer["title"], answer["explanation"], answer["checklist"]) == (
            words.title,
            words.explanation,
            list(words.checklist),
        )
    assert answers["facebook"]["checklist"] != answers["instagram"]["checklist"]
    assert "Page" in " ".join(answers["facebook"]["checklist"])
    assert "Page" not in " ".join(answers["instagram"]["checklist"])  # never sends Instagram Login to Page roles


def test_the_path_defaults_to_instagram_and_is_named_in_the_text(runner):
    default = json.loads(runner.invoke(args=["explain-error", "--json", "-"], input=ROLE_LOST).output)
    assert default["path"] == "instagram"
    text = runner.invoke(args=["explain-error", "--path", "Facebook", "-"], input=ROLE_LOST)
    assert text.exit_code == 0 and "Login path: Facebook Login" in text.output


@pytest.mark.parametrize("path", ["twitter", "", "instagram,facebook"])
def test_a_path_that_is_neither_is_exit_2_with_a_sentence(runner, path):
    result = runner.invoke(args=["explain-error", "--path", path, "-"], input=ROLE_LOST)
    assert result.exit_code == 2
    assert f"--path must be instagram or facebook (how the shop connected), not {path!r}." in result.output
    assert "Cause:" not in result.output


def test_metas_words_for_the_owner_are_printed_without_a_token(runner):
    answer = json.loads(runner.invoke(args=["explain-error", "--json", "-"], input=WITH_OWNER_WORDS).output)
    assert answer["meta_user_title"] == "Confirm your identity"
    assert answer["meta_user_message"] == "Your session [redacted] has ended. Log in to Facebook to confirm it's you."
    text = runner.invoke(args=["explain-error", "-"], input=WITH_OWNER_WORDS).output
    assert "Meta's message to the account owner: Confirm your identity - Your session [redacted] has ended." in text
    assert QUOTED_TOKEN not in text
    plain = json.loads(runner.invoke(args=["explain-error", "--json", "-"], input=PASSWORD).output)
    assert plain["meta_user_title"] is None and plain["meta_user_message"] is None


def test_metas_words_for_the_owner_are_read_from_a_log_line_too(runner):
    line = (
        'FacebookApiException: code=190 subcode=490 error_user_title: "Confirm your identity" '
        f"error_user_msg: 'Log in again, {QUOTED_TOKEN} will not work.' access_token={QUOTED_TOKEN}"
    )
    answer = json.loads(runner.invoke(args=["explain-error", "--json", "-"], input=line).output)
    assert answer["cause"] == "account_checkpoint"
    assert answer["meta_user_title"] == "Confirm your identity"
    assert answer["meta_user_message"] == "Log in again, [redacted] will not work."
    assert QUOTED_TOKEN not in json.dumps(answer)  # the text read as Meta's message is redacted too


def answer_of(page: str) -> str:
    """The explanation's article, without the form that keeps the paste."""
    return page.split('<article class="explanation"')[1].split("</article>")[0]


def explain_page(client, auth, raw, **fields):
    from tests.factories import make_user

    auth.login_as(make_user(role="support"))
    token = auth.csrf_token("/support/explain")
    return client.post("/support/explain", data={"csrf_token": token, "raw_error": raw, **fields})


@pytest.mark.parametrize("path", ["instagram", "facebook"])
def test_the_support_page_lets_staff_choose_the_path(client, auth, path):
    import html

    from webapp.services.connections.causes import words_for

    response = explain_page(client, auth, ROLE_LOST, path=path)
    page = html.unescape(response.get_data(as_text=True))  # the steps say "the business's admins"
    words = words_for("permissions_changed", path)
    assert response.status_code == 200
    assert words.title in page and all(step in page for step in words.checklist)
    assert re.search(rf'<input checked [^>]*value="{path}"', page)  # the choice stays for the next paste
    assert ("Page" in answer_of(page)) == (path == "facebook")


def test_the_support_page_defaults_to_instagram_login(client, auth):
    from tests.factories import make_user

    auth.login_as(make_user(role="support"))
    form = client.get("/support/explain").get_data(as_text=True)
    assert re.search(r'<input checked [^>]*value="instagram"', form)
    page = explain_page(client, auth, ROLE_LOST).get_data(as_text=True)  # a form without the field: Instagram
    assert "Advice for a shop connected through Instagram Login." in page


def test_the_support_page_refuses_another_path(client, auth):
    response = explain_page(client, auth, ROLE_LOST, path="myspace")
    assert response.status_code == 400 and "Choose Instagram Login or Facebook Login." in response.text
    assert 'aria-labelledby="answer-title"' not in response.text


def test_the_support_page_shows_metas_words_for_the_owner_without_a_token(client, auth):
    answer = answer_of(explain_page(client, auth, WITH_OWNER_WORDS, path="facebook").get_data(as_text=True))
    quoted = answer.split('id="meta-user-message">')[1].split("</blockquote>")[0]
    assert "<strong>Confirm your identity</strong>" in quoted
    assert "Your session [redacted] has ended. Log in to Facebook to confirm it&#39;s you." in quoted
    assert QUOTED_TOKEN not in answer  # (the form keeps the paste itself, for the agent to edit)
    assert 'id="meta-user-message"' not in explain_page(client, auth, PASSWORD).get_data(as_text=True)


def test_a_token_in_a_pasted_log_line_is_not_read_back_as_metas_message(client, auth):
    answer = answer_of(explain_page(client, auth, f"OAuthException code 190 for {QUOTED_TOKEN}").get_data(as_text=True))
    assert QUOTED_TOKEN not in answer and "OAuthException code 190 for [redacted]" in answer
