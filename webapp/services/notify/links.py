"""Signed links in mails: reconnect (used once) and unsubscribe."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask import Flask
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import UsedLinkToken


class LinkError(ValueError):
    """A signed link is broken, expired or already used; the message is for the person."""


def _serializer(app: Flask, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=f"shop-health:{purpose}")


def reconnect_token(app: Flask, connection_id: int, user_id: int) -> str:
    return _serializer(app, "reconnect").dumps({"c": connection_id, "u": user_id, "n": secrets.token_urlsafe(12)})


def read_reconnect_token(app: Flask, token: str) -> dict:
    """Verify a reconnect link; raise LinkError when it is forged, too old or already used."""
    max_age = app.config["RECONNECT_LINK_DAYS"] * 86400
    try:
        payload = _serializer(app, "reconnect").loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise LinkError("This reconnect link has expired. You can reconnect from your dashboard.") from exc
    except BadSignature as exc:
        raise LinkError("This reconnect link is not valid. You can reconnect from your dashboard.") from exc
    if db.session.get(UsedLinkToken, payload["n"]) is not None:
        raise LinkError("This reconnect link was already used. You can reconnect from your dashboard.")
    return payload


def use_reconnect_token(payload: dict, now: datetime) -> None:
    db.session.add(UsedLinkToken(nonce=payload["n"], used_at=now))
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise LinkError("This reconnect link was already used. You can reconnect from your dashboard.") from exc


def unsubscribe_token(app: Flask, user_id: int) -> str:
    return _serializer(app, "unsubscribe").dumps({"u": user_id})


def read_unsubscribe_token(app: Flask, token: str) -> int:
    try:
        return int(_serializer(app, "unsubscribe").loads(token, max_age=400 * 86400)["u"])
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise LinkError("This unsubscribe link is not valid. Change your mail settings from your account.") from exc
