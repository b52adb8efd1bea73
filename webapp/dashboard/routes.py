"""The signed-in home: a merchant's shop, or the staff's list of shops."""

from __future__ import annotations

from flask import Blueprint, abort, g, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from webapp.dashboard import presenter
from webapp.extensions import db
from webapp.models import Shop, User
from webapp.request_input import page_number
from webapp.services.connections.causes import CAUSES, PATTERNS

bp = Blueprint("dashboard", __name__)

SHOPS_PER_PAGE = 50


@bp.get("/")
@login_required
def index():
    if current_user.is_staff:
        return redirect(url_for("support.fleet_overview"))
    return render_template("dashboard/index.html", **presenter.merchant_dashboard(current_user.shop, g.now))


@bp.get("/help/why-instagram-disconnects")
def why_disconnects():
    """Our explainer of Meta's revocations, linked from the card and the diagnosis."""
    return render_template("dashboard/why_disconnects.html", causes=CAUSES, patterns=PATTERNS)


@bp.get("/shops")
@login_required
def shops():
    if not current_user.is_staff:
        abort(403)
    page = page_number()
    pagination = db.paginate(
        select(Shop).order_by(func.lower(Shop.name), Shop.id), page=page, per_page=SHOPS_PER_PAGE, error_out=True
    )
    rows = db.session.execute(
        select(User.shop_id, func.count(User.id))
        .where(User.shop_id.in_([shop.id for shop in pagination.items]))
        .group_by(User.shop_id)
    )
    merchant_counts = {shop_id: count for shop_id, count in rows}
    return render_template("dashboard/shops.html", pagination=pagination, merchant_counts=merchant_counts)
