"""Role checks for views."""

from __future__ import annotations

from functools import wraps

from flask import abort, g
from flask_login import current_user, login_required

OWNER_ONLY_MESSAGE = (
    "While you view the shop as its merchant you cannot connect, reconnect or disconnect Instagram, or change "
    "the merchant's account. Use “Send reconnect link” so the merchant can do it."
)


def merchant_required(view):
    """Only a shop's own merchant logins may use this view."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if current_user.role != "merchant" or current_user.shop_id is None:
            abort(403, description="Only the shop's own logins can change its Instagram connection.")
        return view(*args, **kwargs)

    return wrapper


def staff_required(view):
    """Support and admin only (never while viewing a shop as its merchant: no nesting)."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_staff:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if current_user.role != "admin":
            abort(403, description="Only administrators can open this page.")
        return view(*args, **kwargs)

    return wrapper


def owner_only(view):
    """Refuse this view while a support agent is viewing the shop as its merchant (promise 27)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.get("impersonation") is not None:
            abort(403, description=OWNER_ONLY_MESSAGE)
        return view(*args, **kwargs)

    return wrapper


def impersonating() -> bool:
    return g.get("impersonation") is not None
