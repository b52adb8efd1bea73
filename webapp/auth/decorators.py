"""Role checks for views."""

from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user, login_required


def merchant_required(view):
    """Only a shop's own merchant logins may use this view."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if current_user.role != "merchant" or current_user.shop is None:
            abort(403, description="Only the shop's own logins can change its Instagram connection.")
        return view(*args, **kwargs)

    return wrapper


def staff_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_staff:
            abort(403)
        return view(*args, **kwargs)

    return wrapper
