"""Platform API keys: made and revoked by admins, stored as a hash, checked on every API request.

A key reads `ihk_<key_id>_<secret>`. `key_id` (12 hex digits) finds the row and names the key in
lists and the audit log; the secret (43 url-safe characters, 256 bits) is kept only as its SHA-256,
which is enough for a secret that long: nothing about it can be guessed, so no slow hash is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import API_SCOPES, ApiKey, User
from webapp.services import audit

KEY_PREFIX = "ihk"
KEY_ID_HEX_DIGITS = 12
HEX_DIGITS = frozenset("0123456789abcdef")
NAME_MAX_LENGTH = 120
# last_used_at moves at most this often: one write a minute per key, not one per request.
LAST_USED_GRANULARITY = timedelta(minutes=1)


class ApiKeyError(ValueError):
    """A key cannot be made or found as asked; the message says why, in words for a person."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(raw: Iterable[str]) -> tuple[str, ...]:
    """The scopes asked for, each once, in API_SCOPES order; an unknown or missing one is an ApiKeyError."""
    asked = {part.strip() for item in raw for part in item.split(",") if part.strip()}
    unknown = sorted(asked - set(API_SCOPES))
    if unknown:
        raise ApiKeyError(f"Unknown scope {', '.join(unknown)}: use {', '.join(API_SCOPES)}.")
    if not asked:
        raise ApiKeyError(f"Give the key at least one scope: {', '.join(API_SCOPES)}.")
    return tuple(scope for scope in API_SCOPES if scope in asked)


def create_key(
    *, name: str, scopes: Iterable[str], created_by: User | None, now: datetime, label: str | None = None
) -> tuple[ApiKey, str]:
    """Make a key and audit it; return the row and the full key, which is never shown again.

    `label` names a creator that is not a person (the command line).
    """
    name = " ".join(name.split())
    if _has_control_characters(name):
        raise ApiKeyError("A key's name cannot contain control characters.")
    if not name:
        raise ApiKeyError("Name the key after the service that will use it, e.g. “product sync”.")
    if len(name) > NAME_MAX_LENGTH:
        raise ApiKeyError(f"A key's name is at most {NAME_MAX_LENGTH} characters.")
    granted = parse_scopes(scopes)
    secret = secrets.token_urlsafe(32)
    creator = label or audit.actor_label(created_by)
    key = ApiKey(
        key_id=secrets.token_hex(KEY_ID_HEX_DIGITS // 2),
        secret_hash=_digest(secret),
        name=name,
        scopes=",".join(granted),
        created_by_id=created_by.id if created_by is not None else None,
        created_by=creator,
        created_at=now,
    )
    db.session.add(key)
    db.session.flush()
    audit.record(
        "api_key.created",
        now=now,
        actor=created_by,
        label=label,
        details=f"{key.key_id} “{key.name}”: {', '.join(granted)}",
        commit=False,
    )
    db.session.commit()
    return key, f"{KEY_PREFIX}_{key.key_id}_{secret}"


def _has_control_characters(text: str) -> bool:
    # NUL cannot be stored in PostgreSQL; an escape sequence would replay in every terminal that lists keys.
    return any(unicodedata.category(character) in ("Cc", "Cf") for character in text)


def _split(presented: str) -> tuple[str, str] | None:
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or len(key_id) != KEY_ID_HEX_DIGITS or not secret or len(secret) > 200:
        return None
    if not all(character in HEX_DIGITS for character in key_id):
        return None  # never a query for an id no key has (a NUL would even fail on PostgreSQL)
    return key_id, secret


def authenticate(presented: str, now: datetime) -> ApiKey | None:
    """The key `presented` proves, revoked or not (the caller says which); None for anything else."""
    parts = _split(presented)
    if parts is None:
        return None
    key_id, secret = parts
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if key is None or not hmac.compare_digest(key.secret_hash, _digest(secret)):
        return None
    if key.revoked_at is None and (key.last_used_at is None or now - key.last_used_at >= LAST_USED_GRANULARITY):
        key.last_used_at = now
        db.session.commit()
    return key


def list_keys() -> list[ApiKey]:
    """Every key, live ones first, newest first."""
    return list(db.session.scalars(select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.id.desc())))


def find_key(reference: str) -> ApiKey:
    """The key named by its key id (or a full key, of which only the id is read); an ApiKeyError when none."""
    reference = reference.strip()
    parts = _split(reference)
    key_id = parts[0] if parts else reference
    usable = key_id and not _has_control_characters(key_id)
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id)) if usable else None
    if key is None:
        raise ApiKeyError(f"There is no API key {key_id!r}; `flask --app wsgi apikeys list` shows them.")
    return key


def revoke(key: ApiKey, *, actor: User | None, now: datetime, label: str | None = None) -> bool:
    """Revoke the key at once and audit it; False when it already was."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = now
    audit.record(
        "api_key.revoked", now=now, actor=actor, label=label, details=f"{key.key_id} “{key.name}”", commit=False
    )
    db.session.commit()
    return True
