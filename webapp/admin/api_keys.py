"""Administrators' Platform API keys: make one (its secret shown once), list them, revoke one."""

from __future__ import annotations

from flask import Blueprint, flash, g, make_response, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectMultipleField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; its stubs are 3.2
from wtforms.validators import DataRequired, Length, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from webapp.auth.decorators import admin_required
from webapp.extensions import db
from webapp.models import API_SCOPES, ApiKey
from webapp.services import api_keys

bp = Blueprint("api_keys", __name__, url_prefix="/admin/api-keys")

SCOPE_WORDS = {
    "status:read": "status:read — connection status, one shop or the list",
    "token:read": "token:read — the shop's current access token (every read is audited)",
    "errors:write": "errors:write — report the Meta errors the platform meets",
    "webhooks:manage": "webhooks:manage — add, list and disable webhook endpoints",
}


def at_least_one(form, field) -> None:
    # Not DataRequired: it would mark every checkbox `required`, i.e. each one must be ticked.
    if not field.data:
        raise ValidationError("Pick at least one scope.")


class ApiKeyForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(message="Name the key after the service that uses it."), Length(max=120)],
    )
    scopes = SelectMultipleField(
        "Scopes",
        choices=[SelectChoice(scope, SCOPE_WORDS[scope]) for scope in API_SCOPES],
        validators=[at_least_one],
        option_widget=CheckboxInput(),
        widget=ListWidget(prefix_label=False),
    )
    submit = SubmitField("Create API key")


class RevokeForm(FlaskForm):
    submit = SubmitField("Revoke")


def _page(form: ApiKeyForm, *, new_key: ApiKey | None = None, full_key: str | None = None, status: int = 200):
    response = make_response(
        render_template(
            "admin/api_keys.html",
            form=form,
            revoke_form=RevokeForm(),
            keys=api_keys.list_keys(),
            new_key=new_key,
            full_key=full_key,
        ),
        status,
    )
    if full_key:
        # The one page that shows a key: no cache, no back-button copy.
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("")
@admin_required
def index():
    return _page(ApiKeyForm())


@bp.post("")
@admin_required
def create():
    """Make a key and show it on this answer only (never in a redirect, a flash or the session)."""
    form = ApiKeyForm()
    if not form.validate_on_submit():
        return _page(form, status=400)
    try:
        key, full_key = api_keys.create_key(
            name=form.name.data or "", scopes=form.scopes.data or [], created_by=current_user, now=g.now
        )
    except api_keys.ApiKeyError as error:
        db.session.rollback()
        form.name.errors = [*form.name.errors, str(error)]
        return _page(form, status=400)
    return _page(ApiKeyForm(formdata=None), new_key=key, full_key=full_key, status=201)


@bp.post("/<int:api_key_id>/revoke")
@admin_required
def revoke(api_key_id: int):
    RevokeForm()  # CSRFProtect has already checked the token
    key = db.get_or_404(ApiKey, api_key_id, description="There is no API key with that number.")
    if api_keys.revoke(key, actor=current_user, now=g.now):
        flash(f"Revoked API key {key.key_id} “{key.name}”: its next request is refused.", "success")
    else:
        flash(f"API key {key.key_id} was already revoked.", "info")
    return redirect(url_for(".index"))
