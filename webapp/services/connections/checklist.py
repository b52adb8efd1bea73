"""The merchant's ticks on the current incident's troubleshooting checklist."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import (
    ChecklistTick,
    InstagramConnection,
    User,
)
from webapp.services.connections.diagnosis import current_diagnosis, incident_key


def toggle_checklist_item(connection: InstagramConnection, incident: str, item: int, user: User, now: datetime) -> bool:
    """Tick the step if it was not ticked, untick it otherwise; return whether it is now ticked."""
    existing = db.session.scalar(
        select(ChecklistTick).where(
            ChecklistTick.connection_id == connection.id,
            ChecklistTick.incident_key == incident,
            ChecklistTick.item == item,
        )
    )
    if existing is not None:
        db.session.delete(existing)
        db.session.commit()
        return False
    db.session.add(
        ChecklistTick(connection_id=connection.id, incident_key=incident, item=item, user_id=user.id, ticked_at=now)
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a double click: already ticked
    return True


def checklist_ticks(connection: InstagramConnection | None, incident: str | None) -> set[int]:
    if connection is None or incident is None:
        return set()
    return set(
        db.session.scalars(
            select(ChecklistTick.item).where(
                ChecklistTick.connection_id == connection.id, ChecklistTick.incident_key == incident
            )
        )
    )


class StaleChecklist(Exception):
    """The checklist belongs to a problem that is already over."""


def tick_checklist_item(
    connection: InstagramConnection, submitted_incident: str | None, item: int, user, now: datetime
) -> None:
    """Toggle one step of the current incident's checklist; refuse a list from an earlier incident."""
    current = incident_key(current_diagnosis(connection, now))
    if current is None or submitted_incident != current:
        raise StaleChecklist()
    toggle_checklist_item(connection, current, item, user, now)
