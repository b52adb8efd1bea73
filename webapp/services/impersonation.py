"""Support agents viewing a shop as its merchant (after django-hijack): rules, time box, audit."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Impersonation, Shop, User
from webapp.services import audit
from webapp.services.connections.state import Actor, connection_for, record_event

MIN_REASON_LENGTH = 8


class ImpersonationRefused(Exception):
    """The rules do not allow this impersonation; the message is for the agent."""


def shop_merchant(shop: Shop) -> User | None:
    return db.session.scalar(
        select(User).where(User.shop_id == shop.id, User.role == "merchant", User.active.is_(True)).order_by(User.id)
    )


def start(
    *,
    agent: User,
    shop: Shop,
    reason: str | None,
    password: str | None,
    now: datetime,
    minutes: int,
    ip_prefix: str,
    nested: bool,
) -> Impersonation:
    """Begin viewing `shop` as its merchant; every rule of promises 25 and 26 is checked here."""
    if not agent.is_staff or not agent.active:
        raise ImpersonationRefused("Only support staff can view a shop as its merchant.")
    if nested:
        raise ImpersonationRefused("You are already viewing a shop as its merchant. Stop that first.")
    if not agent.check_password(password or ""):
        raise ImpersonationRefused("Your password is not correct. Enter your own password to confirm it is you.")
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise ImpersonationRefused("Give a reason (for example the ticket number) of at least 8 characters.")
    subject = shop_merchant(shop)
    if subject is None:
        raise ImpersonationRefused("This shop has no active merchant login to view as.")
    if subject.is_staff:  # belt and braces: only merchants are ever impersonated
        raise ImpersonationRefused("Staff accounts cannot be impersonated.")
    impersonation = Impersonation(
        agent_id=agent.id,
        subject_user_id=subject.id,
        shop_id=shop.id,
        reason=reason,
        started_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    db.session.add(impersonation)
    db.session.flush()
    audit.record(
        "impersonation.start",
        now=now,
        actor=agent,
        subject_user=subject,
        subject_shop_id=shop.id,
        impersonation_id=impersonation.id,
        reason=reason,
        ip_prefix=ip_prefix,
        commit=False,
    )
    record_event(
        connection_for(shop),
        "support_viewed",
        now,
        Actor("support", agent.id),
        message=support_visit_words(agent, minutes, reason),
    )
    db.session.commit()
    return impersonation


def support_visit_words(agent: User, minutes: int, reason: str) -> str:
    """What the merchant's timeline says of the visit: the agent's first name only, and the reason they gave.

    The reason is shown on purpose (the start form says so): a merchant may always see why support looked.
    """
    who = f"{agent.name.split()[0]} from our support team" if agent.name.strip() else "A support agent"
    return f"{who} viewed your dashboard as you, for at most {minutes} minutes. Reason given: {reason}"


def running(impersonation_id: int, agent: User) -> Impersonation | None:
    """The impersonation a browser names, if it is this agent's and has not ended."""
    impersonation = db.session.get(Impersonation, impersonation_id)
    if impersonation is None or impersonation.agent_id != agent.id or impersonation.ended_at is not None:
        return None
    return impersonation


def why_it_ends(impersonation: Impersonation, agent: User, now: datetime) -> str | None:
    """Why a running impersonation may not go on (role_revoked, expired, subject_changed); None while it may."""
    if not agent.active or not agent.is_staff:
        return "role_revoked"
    if now >= impersonation.expires_at:
        return "expired"
    if impersonation.subject.is_staff or not impersonation.subject.active:
        return "subject_changed"
    return None


def record_refusal(impersonation: Impersonation, attempt: str, *, now: datetime, ip_prefix: str | None) -> None:
    """Put an owner-only action the agent tried, and was refused, on the record."""
    audit.record(
        "impersonation.refused",
        now=now,
        actor=impersonation.agent,
        subject_user=impersonation.subject,
        subject_shop_id=impersonation.shop_id,
        impersonation_id=impersonation.id,
        ip_prefix=ip_prefix,
        details=attempt,
    )


def stop(impersonation: Impersonation, now: datetime, why: str, ip_prefix: str | None = None) -> None:
    if impersonation.ended_at is not None:
        return
    impersonation.ended_at, impersonation.ended_reason = now, why
    audit.record(
        "impersonation.stop",
        now=now,
        actor=impersonation.agent,
        subject_user=impersonation.subject,
        subject_shop_id=impersonation.shop_id,
        impersonation_id=impersonation.id,
        reason=why,
        ip_prefix=ip_prefix,
        commit=False,
    )
    db.session.commit()


def end_all_for(agent: User, now: datetime, why: str) -> int:
    """End every running impersonation of this agent (their role or account changed)."""
    ongoing = db.session.scalars(
        select(Impersonation).where(Impersonation.agent_id == agent.id, Impersonation.ended_at.is_(None))
    ).all()
    for impersonation in ongoing:
        stop(impersonation, now, why)
    return len(ongoing)


def end_orphaned(impersonation_id: int, agent_id: int, now: datetime) -> str | None:
    """End the impersonation a browser still names after its agent's session died; return why it ended.

    The agent lost the role or the account ("role_revoked"), or only this session ended (signed out
    elsewhere, password changed: "session_ended"). Nothing happens unless it is that agent's and open.
    """
    impersonation = db.session.get(Impersonation, impersonation_id)
    if impersonation is None or impersonation.agent_id != agent_id or impersonation.ended_at is not None:
        return None
    agent = impersonation.agent
    why = "role_revoked" if not agent.active or not agent.is_staff else "session_ended"
    stop(impersonation, now, why)
    return why
