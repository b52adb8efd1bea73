"""The signed-in home: a merchant's shop, or the staff's list of shops."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Shop, User

bp = Blueprint("dashboard", __name__)

SHOPS_PER_PAGE = 50


@bp.get("/")
@login_required
def index():
    if current_user.is_staff:
        return shops()
    shop = current_user.shop
    return render_template("dashboard/index.html", shop=shop, connection=shop.instagram_connection)


@bp.get("/shops")
@login_required
def shops():
    if not current_user.is_staff:
        abort(403)
    page = request.args.get("page", 1, type=int)
    if page < 1:
        abort(404)
    pagination = db.paginate(
        select(Shop).order_by(func.lower(Shop.name), Shop.id), page=page, per_page=SHOPS_PER_PAGE, error_out=True
    )
    merchant_counts = dict(
        db.session.execute(
            select(User.shop_id, func.count(User.id))
            .where(User.shop_id.in_([shop.id for shop in pagination.items]))
            .group_by(User.shop_id)
        ).all()
    )
    return render_template("dashboard/shops.html", pagination=pagination, merchant_counts=merchant_counts)
