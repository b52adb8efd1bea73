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
