"""Role checks for views."""

from __future__ import annotations

from functools import wraps

from flask import abort, g, request
from flask_login import current_user, login_required

from webapp.services import impersonation
from webapp.services.fingerprint import ip_prefix

# Beside each owner-only button, disabled while support views the shop as its merchant.
OWNER_ONLY_REASON = "Only the shop's owner can do this; you are viewing as support."
# The answer when such an action is tried anyway.
OWNER_ONLY_MESSAGE = (
    f"{OWNER_ONLY_REASON} Connecting, reconnecting or disconnecting Instagram and changing the merchant's account "
    "stay with the merchant. Use “Send reconnect link” so they can do it. This attempt is in the audit log."
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
    """Refuse this view while a support agent is viewing the shop as its merchant, on the record (promises 27, 28)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        active = g.get("impersonation")
        if active is not None:
            impersonation.record_refusal(
                active,
                f"{request.method} {request.path} ({request.endpoint})",
                now=g.now,
                ip_prefix=ip_prefix(request.remote_addr),
            )
            abort(403, description=OWNER_ONLY_MESSAGE)
        return view(*args, **kwargs)

    return wrapper


def impersonating() -> bool:
    return g.get("impersonation") is not None
