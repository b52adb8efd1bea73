"""Tools for support agents (roles support and admin): fleet, shops, viewing as merchant, errors, outbox."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from webapp.auth.decorators import staff_required
from webapp.dashboard import presenter
from webapp.extensions import db, limiter
from webapp.models import AuditEntry, FleetIncident, OutboundMail, Shop
from webapp.request_input import page_number
from webapp.services import fleet, impersonation, incidents
from webapp.services.connections.diagnosis import explain_error
from webapp.services.connections.state import Actor, connection_for
from webapp.services.fingerprint import ip_prefix
from webapp.services.keepalive import manual
from webapp.services.keepalive.leases import Work
from webapp.services.notify import planning
from webapp.services.runtime import facebook_client, instagram_client, keep_alive_policy, token_vault
from webapp.support.forms import ExplainErrorForm, ImpersonateForm

bp = Blueprint("support", __name__, url_prefix="/support")
PER_PAGE = 50


@bp.context_processor
def support_words() -> dict:
    return {"login_path_names": fleet.PATH_NAMES}


@bp.get("/")
@staff_required
def fleet_overview():
    """Every shop at a glance: counts per state and login path, recent causes, who needs attention (longest first)."""
    search = request.args.get("q", "").strip()[:100]
    path = fleet.login_path_or_none(request.args.get("path"))
    page = page_number()
    if search:
        results = db.paginate(fleet.search_shops(search, path), page=page, per_page=PER_PAGE, error_out=False)
        return render_template("support/search.html", results=results, search=search, path=path)
    attention = db.paginate(fleet.needs_attention(path=path), page=page, per_page=PER_PAGE, error_out=True)
    counts = fleet.fleet_counts()
    return render_template(
        "support/fleet.html",
        incident=incidents.current(),
        counts=counts.states,
        path_counts=counts.paths,
        causes=fleet.recent_causes(g.now),
        attention=attention,
        search=search,
        path=path,
    )


@bp.get("/shops/<int:shop_id>")
@staff_required
def shop_detail(shop_id: int):
    shop = db.get_or_404(Shop, shop_id, description="There is no shop with that number.")
    context = presenter.merchant_dashboard(shop, g.now)
    connection = context["connection"]
    context["cells"] = presenter.health_strip(connection, g.now)
    context["recent_events"] = presenter.recent_events(connection, 20)
    mails = db.session.scalars(
        select(OutboundMail)
        .where(OutboundMail.user_id.in_([u.id for u in shop.users]))
        .order_by(OutboundMail.id.desc())
        .limit(20)
    ).all()
    audit_rows = db.session.scalars(
        select(AuditEntry).where(AuditEntry.subject_shop_id == shop.id).order_by(AuditEntry.id.desc()).limit(20)
    ).all()
    return render_template(
        "support/shop.html",
        form=ImpersonateForm(),
        mails=mails,
        audit_rows=audit_rows,
        merchant=impersonation.shop_merchant(shop),
        page_role=fleet.page_role(connection),
        **context,
    )


@bp.post("/shops/<int:shop_id>/impersonate")
@staff_required
def impersonate(shop_id: int):
    """Start viewing the shop as its merchant: POST + CSRF + a reason + the agent's own password."""
    shop = db.get_or_404(Shop, shop_id, description="There is no shop with that number.")
    form = ImpersonateForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(url_for(".shop_detail", shop_id=shop.id))
    try:
        started = impersonation.start(
            agent=current_user,
            shop=shop,
            reason=form.reason.data,
            password=form.password.data,
            now=g.now,
            minutes=current_app.config["IMPERSONATION_MINUTES"],
            ip_prefix=ip_prefix(request.remote_addr),
            nested="impersonation_id" in session,
        )
    except impersonation.ImpersonationRefused as refusal:
        flash(str(refusal), "error")
        return redirect(url_for(".shop_detail", shop_id=shop.id))
    session["impersonation_id"] = started.id
    return redirect(url_for("dashboard.index"))


@bp.post("/impersonation/stop")
@login_required
def stop_impersonation():
    active = g.get("impersonation")
    if active is None:
        flash("You were not viewing a shop as its merchant.", "info")
        return redirect(url_for(".fleet_overview"))
    impersonation.stop(active, g.now, "stopped", ip_prefix(request.remote_addr))
    session.pop("impersonation_id", None)
    flash(f"Stopped viewing {active.shop.name} as its merchant.", "success")
    return redirect(url_for(".shop_detail", shop_id=active.shop_id))


def _agent():
    """The real support person: the impersonating agent, or the signed-in staff user."""
    active = g.get("impersonation")
    if active is not None:
        return active.agent
    if current_user.is_authenticated and current_user.is_staff:
        return current_user
    abort(403)


def _shop_key() -> str:
    return f"support-shop:{(request.view_args or {}).get('shop_id')}"


def _may_send_reconnect_link(view):
    """Authorise before the per-shop limit counts, so no one else can spend a shop's budget (promise 38)."""

    @wraps(view)
    def wrapper(shop_id: int):
        _agent()
        active = g.get("impersonation")
        if active is not None and active.shop_id != shop_id:
            abort(403)
        return view(shop_id)

    return wrapper


@bp.post("/shops/<int:shop_id>/reconnect-link")
@login_required
@_may_send_reconnect_link
@limiter.limit("5 per hour", key_func=_shop_key)
def send_reconnect_link(shop_id: int):
    """Mail the shop's merchants a signed, single-use reconnect link (from support or while viewing)."""
    agent = _agent()
    active = g.get("impersonation")
    shop = db.get_or_404(Shop, shop_id, description="There is no shop with that number.")
    sent = planning.send_reconnect_link(
        current_app,
        connection_for(shop),
        agent,
        g.now,
        impersonation_id=active.id if active else None,
        ip_prefix=ip_prefix(request.remote_addr),
    )
    if sent:
        flash(f"Reconnect link sent to {sent} merchant login(s) of {shop.name}.", "success")
    else:
        flash(f"{shop.name} has no active merchant login to send a link to.", "warning")
    return redirect(url_for("dashboard.index") if active else url_for(".shop_detail", shop_id=shop.id))


@bp.post("/shops/<int:shop_id>/test")
@staff_required
@limiter.limit("6 per minute", key_func=_shop_key)
def test_connection(shop_id: int):
    shop = db.get_or_404(Shop, shop_id, description="There is no shop with that number.")
    connection = connection_for(shop)
    try:
        result = manual.run_now(
            current_app,
            connection.id,
            Work.CHECK,
            actor=Actor("support", current_user.id),
            now=g.now,
            client=instagram_client(),
            facebook=facebook_client(),
            vault=token_vault(),
            policy=keep_alive_policy(),
        )
    except manual.ConnectionBusy:
        flash("An automatic check is running right now. Try again in a few seconds.", "info")
    else:
        flash(result.message, result.level)
    return redirect(url_for(".shop_detail", shop_id=shop.id))


@bp.route("/explain", methods=["GET", "POST"])
@staff_required
def explain():
    """Paste a raw Meta error and get the same answer as `flask explain-error`."""
    form = ExplainErrorForm()
    answer = explain_error(form.raw_error.data or "", form.path.data) if form.validate_on_submit() else None
    return render_template("support/explain.html", form=form, answer=answer), 400 if form.errors else 200


@bp.get("/outbox")
@staff_required
def outbox():
    """Every mail the dashboard wrote, newest first, with its delivery status (also without MAIL_URL)."""
    page = page_number()
    pagination = db.paginate(select(OutboundMail).order_by(OutboundMail.id.desc()), page=page, per_page=25)
    return render_template("support/outbox.html", pagination=pagination)


@bp.get("/outbox/<int:mail_id>")
@staff_required
def outbox_mail(mail_id: int):
    mail = db.get_or_404(OutboundMail, mail_id, description="There is no mail with that number.")
    return render_template("support/outbox_mail.html", mail=mail)


@bp.get("/incidents")
@staff_required
def incident_list():
    """Every fleet incident (Meta failing for many shops at once), newest first."""
    pagination = db.paginate(incidents.all_incidents(), page=page_number(), per_page=PER_PAGE, error_out=True)
    return render_template("support/incidents.html", pagination=pagination)


@bp.get("/incidents/<int:incident_id>")
@staff_required
def incident_detail(incident_id: int):
    """One incident: its timeline and the shops it touched."""
    incident = db.get_or_404(FleetIncident, incident_id, description="There is no incident with that number.")
    window = incidents.Thresholds.from_config(current_app.config).window
    shops = db.paginate(
        incidents.touched_connections(incident, window, g.now), page=page_number(), per_page=PER_PAGE, error_out=True
    )
    return render_template(
        "support/incident.html", incident=incident, timeline=incidents.timeline(incident), shops=shops
    )
