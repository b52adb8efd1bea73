"""Fleet search and the needs-attention list: the same answers on SQLite and on PostgreSQL, with or without
pg_trgm, and the query shapes PostgreSQL's indexes serve (migration 0020). Speed is bench/fleet.py's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import TEST_DATABASE_URL
from tests.factories import make_connection, make_facebook_connection, make_shop, make_user
from webapp.services import fleet
from webapp.support import routes as support_routes

FOUND = re.compile(r'<td><a href="/support/shops/\d+">([^<]+)</a></td>')
postgres_only = pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL (TEST_DATABASE_URL)")


@pytest.fixture
def agent(auth):
    user = make_user(role="support", email="sam@support.example", name="Sam")
    auth.login_as(user)
    return user


@pytest.fixture
def shops(db):
    """Shops whose name, domain, @username and login email each hold something only they hold."""
    rows = {
        "Ab Studio": ("ab-studio.example", "ab.studio", "lena@ab-studio.example"),
        "Kiosk": ("kiosk.example", "kiosk_ab", "olek@kiosk.example"),  # "ab" only in the username
        "Mill": ("mill.example", "mill", "ab@mill.example"),  # "ab" only in the email
        "100% Linen": ("linen.example", "linen", "ida@linen.example"),
        "Percent Co": ("percent.example", "percent_co", "per@percent.example"),
        "Under_Score": ("underscore.example", "underxscore", "uma@underscore.example"),
        "Back\\slash": ("backslash.example", "backslash", "bo@backslash.example"),
        "Café Noir": ("cafe-noir.example", "cafe.noir", "cleo@cafe-noir.example"),
        "Ørsted Yarn": ("orsted.example", "orsted", "ole@orsted.example"),
    }
    made = {}
    for name, (domain, username, email) in rows.items():
        shop = make_shop(name=name, domain=domain)
        make_user(shop=shop, email=email)
        make_connection(shop, username=username)
        made[name] = shop
    return made


def found(client, query: str) -> list[str]:
    page = client.get("/support/", query_string={"q": query})
    assert page.status_code == 200
    return [name.replace("&amp;", "&") for name in FOUND.findall(page.get_data(as_text=True))]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ab", ["Ab Studio", "Kiosk", "Mill"]),  # two characters: no trigram, still every column
        ("AB", ["Ab Studio", "Kiosk", "Mill"]),
        ("@ab", ["Ab Studio", "Kiosk", "Mill"]),
        ("k", ["Back\\slash", "Kiosk"]),  # one character
        ("%", ["100% Linen"]),  # a wildcard matches itself, not everything
        ("_", ["Kiosk", "Percent Co", "Under_Score"]),  # usernames of two, the name of the third
        ("r_s", ["Under_Score"]),  # not "rxs"
        ("\\", ["Back\\slash"]),
        ("k\\s", ["Back\\slash"]),
        ("kiosk_ab", ["Kiosk"]),
        ("OLEK@KIOSK", ["Kiosk"]),
        ("café", ["Café Noir"]),  # accents are kept, as before: "cafe" is the domain's and username's
        ("cafe", ["Café Noir"]),
        ("nothing like it", []),
    ],
)
def test_search_finds_each_match_in_any_column_whatever_the_term(client, agent, shops, query, expected):
    assert found(client, query) == expected


def test_accented_capitals_match_as_the_database_lower_cases_them(client, agent, db, shops):
    """PostgreSQL lower-cases "É" and "Ø"; SQLite's lower() knows ASCII only. The trigram indexes change neither."""
    make_shop(name="ÉCLAIR")
    postgres = db.engine.dialect.name == "postgresql"
    assert found(client, "ÉCLAIR") == (["ÉCLAIR"] if postgres else [])  # the term is lower-cased, the name is not
    assert found(client, "éclair") == (["ÉCLAIR"] if postgres else [])
    assert found(client, "ørsted") == (["Ørsted Yarn"] if postgres else [])
    assert found(client, "orsted") == ["Ørsted Yarn"]  # its domain, username and no accent folding


def test_a_search_matching_more_than_the_limit_lists_the_first_by_name(client, agent, db, shops, monkeypatch):
    """The cap is applied per column before the union, yet the first shops by name across every column win."""
    monkeypatch.setattr(fleet, "SEARCH_LIMIT", 2)
    page = client.get("/support/?q=ab").get_data(as_text=True)
    assert "More than 2 found" in page and "the first 2 by name are listed" in page
    assert FOUND.findall(page) == ["Ab Studio", "Kiosk"]  # Kiosk matched by username, Mill by email
    monkeypatch.setattr(fleet, "SEARCH_LIMIT", 3)
    page = client.get("/support/?q=ab").get_data(as_text=True)
    assert "3 found" in page and "More than" not in page


def test_a_shop_with_several_matching_logins_counts_once_under_the_cap(client, agent, db, monkeypatch):
    busy = make_shop(name="Aa Busy")
    for person in ("ana", "ben", "cy"):
        make_user(shop=busy, email=f"{person}@team.example")
    for name in ("Bb Quiet", "Cc Quiet"):
        make_user(shop=make_shop(name=name), email=f"owner@{name.split()[0].lower()}-team.example")
    monkeypatch.setattr(fleet, "SEARCH_LIMIT", 2)
    page = client.get("/support/?q=team.example").get_data(as_text=True)
    assert FOUND.findall(page) == ["Aa Busy", "Bb Quiet"] and "More than 2 found" in page
    monkeypatch.setattr(fleet, "SEARCH_LIMIT", 3)
    page = client.get("/support/?q=team.example").get_data(as_text=True)
    assert FOUND.findall(page) == ["Aa Busy", "Bb Quiet", "Cc Quiet"] and "3 found" in page and "More" not in page


def test_search_pages_hold_the_ranked_matches(client, agent, db, shops, monkeypatch):
    monkeypatch.setattr(support_routes, "PER_PAGE", 2)
    first = client.get("/support/?q=ab").get_data(as_text=True)
    assert FOUND.findall(first) == ["Ab Studio", "Kiosk"] and "Page 1 of 2" in first
    assert 'href="/support/?q=ab&amp;page=2"' in first
    second = client.get("/support/?q=ab&page=2").get_data(as_text=True)
    assert FOUND.findall(second) == ["Mill"] and "Page 2 of 2" in second
    past = client.get("/support/?q=ab&page=7")
    assert past.status_code == 200 and FOUND.findall(past.get_data(as_text=True)) == []


def test_search_on_a_login_path_caps_after_the_path_filter(client, agent, db, monkeypatch):
    """Shops on the other path must not use up the cap: those on the path are still found."""
    for index in range(4):
        make_connection(make_shop(name=f"Aster {index}"), username=f"aster_ig_{index}")
    for index in range(2):
        make_facebook_connection(make_shop(name=f"Azalea {index}"), username=f"aster_fb_{index}")
    monkeypatch.setattr(fleet, "SEARCH_LIMIT", 3)
    assert found(client, "aster") == ["Aster 0", "Aster 1", "Aster 2"]
    page = client.get("/support/?q=aster&path=facebook").get_data(as_text=True)
    assert FOUND.findall(page) == ["Azalea 0", "Azalea 1"] and "2 found connected through Facebook Login" in page


def test_needs_attention_pages_come_in_order_with_the_total_from_the_counts(client, agent, db):
    now = datetime.now(UTC)
    for index in range(53):
        connection = make_connection(make_shop(name=f"Broken {index:02d}"), state="needs_reconnect")
        connection.cause, connection.state_changed_at = "invalid_token", now - timedelta(hours=index)
    make_connection(make_shop(name="Fine"), state="healthy")
    db.session.commit()
    first = client.get("/support/").get_data(as_text=True)
    assert "Page 1 of 2" in first and "(53)" in first
    names = re.findall(r'<td><a href="/support/shops/\d+">(Broken \d+)</a>', first)
    assert names == [f"Broken {index:02d}" for index in range(52, 2, -1)]  # longest in trouble first
    second = client.get("/support/?page=2").get_data(as_text=True)
    assert re.findall(r'<td><a href="/support/shops/\d+">(Broken \d+)</a>', second) == [
        "Broken 02",
        "Broken 01",
        "Broken 00",
    ]
    assert client.get("/support/?page=3").status_code == 404


def plan_of_the_statement(client, db, url: str, marker: str, *settings: str) -> str:
    """PostgreSQL's plan of the statement a request ran that contains `marker`, under `settings` (SET LOCAL)."""
    from sqlalchemy import event

    seen = []

    def record(_conn, _cursor, statement, parameters, *_args):
        if marker in " ".join(statement.split()):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len(seen) == 1, seen
    statement, parameters = seen[0]
    with db.engine.begin() as connection:
        for setting in settings:
            connection.exec_driver_sql(f"SET LOCAL {setting} = off")
        return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters))


@postgres_only
@pytest.mark.postgres
def test_every_column_search_matches_is_served_by_its_trigram_index(client, agent, db, shops):
    """The query's `lower(column) LIKE ... ESCAPE` is the expression each GIN index holds (migration 0020).

    With whole-table reads and B-tree walks forbidden, a column whose index the query cannot use would
    still be read whole (at a prohibitive cost, "disabled"), and its index would be missing from the plan.
    """
    plan = plan_of_the_statement(client, db, "/support/?q=kiosk_ab", " UNION ", "enable_seqscan", "enable_indexscan")
    for index in (
        "ix_shops_name_trgm",
        "ix_shops_domain_trgm",
        "ix_instagram_connections_username_trgm",
        "ix_users_email_trgm",
    ):
        assert index in plan, plan


@postgres_only
@pytest.mark.postgres
def test_the_needs_attention_page_reads_only_its_partial_index(client, agent, db):
    """The states are literal in the SQL, so the planner can prove the page's rows are the partial index's."""
    for index in range(3):
        make_connection(make_shop(name=f"Broken {index}"), state="degraded")
    plan = plan_of_the_statement(
        client,
        db,
        "/support/?path=facebook",
        "SELECT instagram_connections.id FROM",
        "enable_seqscan",
        "enable_bitmapscan",
    )
    assert "Index Only Scan using ix_instagram_connections_attention" in plan, plan
