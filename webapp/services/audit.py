"""The audit log: append-only rows naming the real actor, the subject and the reason."""

from __future__ import annotations

from datetime import datetime

from webapp.extensions import db
from webapp.models import AuditEntry, User


def actor_label(user: User | None) -> str:
    return f"{user.email} ({user.role})" if user is not None else "Meta"


def record(
    action: str,
    *,
    now: datetime,
    actor: User | None,
    subject_user: User | None = None,
    subject_shop_id: int | None = None,
    impersonation_id: int | None = None,
    reason: str | None = None,
    ip_prefix: str | None = None,
    details: str | None = None,
    commit: bool = True,
    label: str | None = None,
) -> AuditEntry:
    """Append one row; `label` names an actor that is not a person (an API key, the command line)."""
    entry = AuditEntry(
        occurred_at=now,
        actor_id=actor.id if actor is not None else None,
        actor_label=label or actor_label(actor),
        action=action,
        subject_user_id=subject_user.id if subject_user is not None else None,
        subject_shop_id=subject_shop_id
        if subject_shop_id is not None
        else (subject_user.shop_id if subject_user else None),
        impersonation_id=impersonation_id,
        reason=reason,
        ip_prefix=ip_prefix,
        details=details[:1000] if details else None,
    )
    db.session.add(entry)
    if commit:
        db.session.commit()
    return entry
