"""Small factories for models; every object is committed so views see it."""

from __future__ import annotations

import itertools
from datetime import datetime

from testbed.client import DEFAULT_PASSWORD
from webapp import clock
from webapp.extensions import db
from webapp.models import Shop, User

# Production hashes with scrypt (about 130 ms a hash); a thousand PBKDF2 rounds keep tests fast.
TEST_PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
_sequence = itertools.count(1)


def make_shop(name: str | None = None, domain: str | None = None, **fields) -> Shop:
    number = next(_sequence)
    shop = Shop(
        name=name or f"Test Shop {number}",
        domain=domain or f"shop-{number}.example",
        created_at=fields.pop("created_at", clock.now()),
        **fields,
    )
    db.session.add(shop)
    db.session.commit()
    return shop


def make_user(
    role: str = "merchant",
    shop: Shop | None = None,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    **fields,
) -> User:
    number = next(_sequence)
    if role == "merchant" and shop is None:
        shop = make_shop()
    user = User(
        email=email or f"{role}{number}@example.com",
        role=role,
        shop=shop,
        name=fields.pop("name", f"{role.title()} {number}"),
        created_at=clock.now(),
        **fields,
    )
    user.set_password(password, TEST_PASSWORD_HASH_METHOD)
    db.session.add(user)
    db.session.commit()
    return user


def make_connection(
    shop: Shop | None = None,
    *,
    token: str = "IGAAfactory-token",
    issued_at: datetime | None = None,
    expires_at: datetime | None = None,
    state: str = "healthy",
    username: str = "shop_account",
    instagram_user_id: str | None = None,
    refresh_due_at: datetime | None = None,
    check_due_at: datetime | None = None,
    **fields,
):
    """A connected shop; times default to a token issued 8 days ago (refresh due)."""
    from datetime import timedelta

    from flask import current_app

    from webapp.models import InstagramConnection
    from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME
    from webapp.services.token_vault import fingerprint

    shop = shop or make_shop()
    now = clock.now()
    issued_at = issued_at or now - timedelta(days=8)
    expires_at = expires_at or issued_at + LONG_LIVED_TOKEN_LIFETIME
    connection = InstagramConnection(
        shop=shop,
        state=state,
        username=username,
        instagram_user_id=instagram_user_id or f"1784{next(_sequence):011d}",
        granted_permissions="instagram_business_basic",
        token_ciphertext=current_app.extensions["token_vault"].encrypt(token),
        token_fingerprint=fingerprint(token),
        token_issued_at=issued_at,
        token_expires_at=expires_at,
        connected_at=issued_at,
        **fields,
    )
    connection.schedule(
        refresh_due_at=refresh_due_at or issued_at + timedelta(days=7),
        check_due_at=check_due_at or now + timedelta(hours=6),
    )
    db.session.add(connection)
    db.session.commit()
    return connection


def make_facebook_connection(
    shop: Shop | None = None,
    *,
    token: str = "EAAfactory-page-token",
    issued_at: datetime | None = None,
    expires_at: datetime | None = None,
    page_name: str = "Tea House",
    page_id: str | None = None,
    tasks: str = "MANAGE,CREATE_CONTENT,MODERATE,ADVERTISE,ANALYZE",
    **fields,
):
    """A shop connected through Facebook Login: a Page's token whose expiry is the 90-day data-access window's end.

    Such connections are never refreshed (refresh_due_at stays empty); only health checks are scheduled.
    """
    from datetime import timedelta

    from webapp.services.connections.causes import DATA_ACCESS_WINDOW

    issued_at = issued_at or clock.now() - timedelta(days=8)
    connection = make_connection(
        shop,
        token=token,
        issued_at=issued_at,
        expires_at=expires_at or issued_at + DATA_ACCESS_WINDOW,
        login_path="facebook",
        facebook_user_id=f"10{next(_sequence):013d}",
        facebook_page_id=page_id or f"1048{next(_sequence):011d}",
        facebook_page_name=page_name,
        facebook_page_tasks=tasks,
        **fields,
    )
    connection.schedule(refresh_due_at=None, check_due_at=connection.check_due_at)
    db.session.commit()
    return connection
