from __future__ import annotations

from tests.factories import make_shop, make_user


def test_merchant_home_shows_the_shop_and_its_people(client, auth):
    shop = make_shop(name="Tea House", domain="tea.example")
    me = make_user(shop=shop, name="Maya")
    colleague = make_user(shop=shop, name="Leo")
    make_user(name="Stranger")
    auth.login_as(me)
    page = client.get("/").get_data(as_text=True)
    assert "<h1>Tea House</h1>" in page and "tea.example" in page
    assert "Maya" in page and "(you)" in page and colleague.email in page
    assert "Stranger" not in page


def test_support_home_lists_shops(client, auth):
    make_shop(name="Zebra Crafts")
    make_shop(name="apple bakery")
    auth.login_as(make_user(role="support"))
    assert client.get("/").headers["Location"] == "/support/"
    page = client.get("/shops").get_data(as_text=True)
    assert page.index("apple bakery") < page.index("Zebra Crafts")
    assert "2 shops" in page


def test_nav_shows_shop_and_user(client, auth):
    me = make_user(name="Maya")
    auth.login_as(me)
    page = client.get("/").get_data(as_text=True)
    assert 'class="nav-shop"' in page and "Maya" in page and "Log out" in page
