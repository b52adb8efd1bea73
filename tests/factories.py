"""Small factories for models; every object is committed so views see it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from webapp.extensions import db
from webapp.models import Shop, User

DEFAULT_PASSWORD = "correct-horse-battery"
_sequence = itertools.count(1)


def make_shop(name: str | None = None, domain: str | None = None, **fields) -> Shop:
    number = next(_sequence)
    shop = Shop(
        name=name or f"Test Shop {number}",
        domain=domain or f"shop-{number}.example",
        created_at=fields.pop("created_at", datetime.now(UTC)),
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
        created_at=datetime.now(UTC),
        **fields,
    )
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user
