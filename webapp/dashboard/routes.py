"""The signed-in home: a merchant's shop and its fragments (card, what happened, activity), or the staff's shops."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from webapp.auth.decorators import merchant_required
from webapp.dashboard import fragments, presenter
from webapp.extensions import db
from webapp.htmx import is_fragment_request, vary_on_htmx
from webapp.models import Shop, User
from webapp.request_input import page_number
from webapp.services.connections import checklist, state
from webapp.services.connections.causes import CAUSES, PATTERNS

bp = Blueprint("dashboard", __name__)

SHOPS_PER_PAGE = 50


@bp.get("/")
@login_required
def index():
    if current_user.is_staff:
        return redirect(url_for("support.fleet_overview"))
    return render_template("dashboard/index.html", **presenter.merchant_dashboard(current_user.shop, g.now))


@bp.get("/card")
@merchant_required
def card():
    """The Instagram card alone (htmx), or the dashboard that contains it."""
    return fragments.card_response(
        changed=False,
        seen=presenter.page_saw(request.args.get("seen")),
        told=presenter.page_saw(request.args.get("told")),
        told_until=request.args.get("until", type=int),
    )


@bp.get("/what-happened")
@merchant_required
def what_happened():
    """The "What happened" panel alone (htmx), or the dashboard that contains it."""
    return fragments.what_happened_response()


@bp.post("/checklist")
@merchant_required
def tick_checklist_step():
    """Tick or untick one checklist step of the current incident."""
    item = request.form.get("item", type=int)
    if item is None or item < 0 or item > 20:
        abort(400, description="That checklist step does not exist.")
    connection = state.connection_for(current_user.shop)
    try:
        checklist.tick_checklist_item(connection, request.form.get("incident"), item, current_user, g.now)
    except checklist.StaleChecklist:
        flash("That checklist belongs to a problem that is already over.", "info")
    return fragments.what_happened_response()


@bp.get("/activity")
@merchant_required
def activity():
    """The 90-day strip and the latest events (htmx), or the full history page."""
    if not is_fragment_request():
        return vary_on_htmx(redirect(url_for(".history")))
    connection = state.connection_for(current_user.shop)
    html = render_template(
        "dashboard/_activity.html",
        cells=presenter.health_strip(connection, g.now),
        recent_events=presenter.recent_events(connection, 5),
    )
    return vary_on_htmx(make_response(html))


@bp.get("/history")
@merchant_required
def history():
    """Every event of the shop's connection, filtered and paginated, under the 90-day strip."""
    connection = state.connection_for(current_user.shop)
    group = request.args.get("group") or None
    if group is not None and group not in presenter.EVENT_GROUPS:
        abort(404, description="There is no such filter for the history.")
    page = page_number()
    pagination = db.paginate(presenter.timeline_query(connection, group), page=page, per_page=25, error_out=True)
    cells = presenter.health_strip(connection, g.now)
    return render_template(
        "dashboard/history.html", pagination=pagination, group=group, filters=presenter.HISTORY_FILTERS, cells=cells
    )


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
