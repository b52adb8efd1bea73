"""Tools for support agents (roles support and admin)."""

from __future__ import annotations

from flask import Blueprint, render_template

from webapp.auth.decorators import staff_required
from webapp.services.diagnosis import explain_error
from webapp.support.forms import ExplainErrorForm

bp = Blueprint("support", __name__, url_prefix="/support")


@bp.route("/explain", methods=["GET", "POST"])
@staff_required
def explain():
    """Paste a raw Meta error and get the same answer as `flask explain-error`."""
    form = ExplainErrorForm()
    answer = explain_error(form.raw_error.data) if form.validate_on_submit() else None
    return render_template("support/explain.html", form=form, answer=answer), 400 if form.errors else 200


@bp.get("/outbox")
@staff_required
def outbox():
    """Every mail the dashboard wrote, newest first, with its delivery status (also without MAIL_URL)."""
    from flask import request
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import OutboundMail

    page = request.args.get("page", 1, type=int)
    pagination = db.paginate(select(OutboundMail).order_by(OutboundMail.id.desc()), page=page, per_page=25)
    return render_template("support/outbox.html", pagination=pagination)


@bp.get("/outbox/<int:mail_id>")
@staff_required
def outbox_mail(mail_id: int):
    from webapp.extensions import db
    from webapp.models import OutboundMail

    mail = db.get_or_404(OutboundMail, mail_id, description="There is no mail with that number.")
    return render_template("support/outbox_mail.html", mail=mail)
