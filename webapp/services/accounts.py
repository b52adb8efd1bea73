"""Users, passwords and login sessions."""

from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime
from functools import cache
from typing import cast

from flask import current_app
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.extensions import db
from webapp.models import ROLES, LoginSession, Shop, User
from webapp.services import audit
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.impersonation import end_all_for

MIN_PASSWORD_LENGTH = 10
# A short list is enough to stop the passwords people actually try first.
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "passw0rd",
        "1234567890",
        "12345678910",
        "qwertyuiop",
        "iloveyou",
        "letmein123",
        "welcome123",
        "instagram",
        "instagram1",
        "shopshop",
        "administrator",
        "qwerty1234",
        "abc1234567",
        "changeme",
        "changeme123",
        "0987654321",
        "1111111111",
    }
)


class AccountError(ValueError):
    """A request about accounts that cannot be carried out; the message is for the user."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


CONTROL_CHARACTERS_MESSAGE = "An email address cannot contain line breaks or other control characters."


def has_control_characters(text: str) -> bool:
    """True when `text` holds a control character or line separator (CR/LF would inject mail headers)."""
    return any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text)


def password_problem(password: str, email: str = "") -> str | None:
    """Return why a password is too weak, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > 200:
        return "Use at most 200 characters."
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(password)) < 4:
        return "That password is too easy to guess; pick a longer phrase."
    local_part = email.split("@")[0].lower()
    if local_part and len(local_part) >= 4 and local_part in lowered:
        return "Do not include your email address in the password."
    return None


@cache
def _timing_dummy_hash(method: str) -> str:
    return generate_password_hash(secrets.token_hex(16), method)


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == User.normalise_email(email)))


def create_user(
    *, email: str, password: str, role: str, now: datetime, shop: Shop | None = None, name: str = ""
) -> User:
    """Create a user after checking role, shop, email uniqueness and password strength."""
    email = User.normalise_email(email)
    if has_control_characters(email):
        raise AccountError(CONTROL_CHARACTERS_MESSAGE, field="email")
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise AccountError(f"{email!r} is not an email address.", field="email")
    if role not in ROLES:
        raise AccountError(f"Role must be one of {', '.join(ROLES)}.", field="role")
    if role == "merchant" and shop is None:
        raise AccountError("A merchant must belong to a shop.")
    if role != "merchant" and shop is not None:
        raise AccountError("Support and admin users do not belong to a shop.")
    if find_user_by_email(email):
        raise AccountError(f"A user with the email {email} already exists.", field="email")
    problem = password_problem(password, email)
    if problem:
        raise AccountError(problem, field="password")
    user = User(email=email, role=role, shop=shop, name=name, created_at=now, password_changed_at=now)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> User | None:
    """Return the active user with these credentials, or None (same answer for every failure)."""
    user = find_user_by_email(email)
    if user is None:
        # Hash anyway so a missing account takes as long as a wrong password.
        check_password_hash(_timing_dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
        return None
    if not user.active or not user.check_password(password):
        return None
    return user


def start_session(user: User, client_fingerprint: ClientFingerprint, now: datetime) -> LoginSession:
    """Record a new signed-in browser for the user and return it."""
    login_session = LoginSession(
        user=user,
        created_at=now,
        ip_prefix=client_fingerprint.ip_prefix,
        user_agent_family=client_fingerprint.user_agent_family,
    )
    user.last_login_at = now
    db.session.add(login_session)
    db.session.commit()
    return login_session


def live_session(user_id: int, session_id: str | None) -> LoginSession | None:
    """Return the non-revoked session with this id belonging to this user."""
    if not session_id:
        return None
    login_session = db.session.get(LoginSession, session_id)
    if login_session is None or login_session.user_id != user_id or login_session.revoked_at is not None:
        return None
    return login_session


def user_with_live_session(user_id: int, session_id: str | None) -> User | None:
    """The user, if this browser's session is theirs and still live (one query: it runs on every request)."""
    if not session_id:
        return None
    return db.session.scalar(
        select(User)
        .join(LoginSession, LoginSession.user_id == User.id)
        .where(User.id == user_id, LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
        # Merchant pages all need the shop and its connection: fetch them in the same round trip.
        .options(joinedload(User.shop).joinedload(Shop.instagram_connection))
    )


def revoke_session(session_id: str | None, now: datetime) -> None:
    if session_id:
        db.session.execute(
            update(LoginSession)
            .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        db.session.commit()


def revoke_all_sessions(user: User, now: datetime, keep: str | None = None) -> int:
    """End every live session of the user except `keep`; return how many ended."""
    statement = update(LoginSession).where(LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None))
    if keep:
        statement = statement.where(LoginSession.id != keep)
    # Session.execute types every result as a plain Result; an UPDATE's is a CursorResult.
    result = cast(CursorResult, db.session.execute(statement.values(revoked_at=now)))
    db.session.commit()
    return result.rowcount or 0


def change_password(user: User, current: str, new: str, now: datetime, keep_session: str | None) -> None:
    """Change the password and sign out every other browser of this user."""
    if not user.check_password(current):
        raise AccountError("Your current password is not correct.", field="current_password")
    if current == new:
        raise AccountError("The new password must differ from the current one.", field="new_password")
    problem = password_problem(new, user.email)
    if problem:
        raise AccountError(problem, field="new_password")
    user.set_password(new)
    user.password_changed_at = now
    db.session.commit()
    revoke_all_sessions(user, now, keep=keep_session)


def change_role(user: User, role: str, *, actor: User, now: datetime) -> None:
    """Give a staff user another staff role; their sessions end so the change applies at once."""
    if role not in ("support", "admin"):
        raise AccountError("Staff roles are support and admin.")
    if not user.is_staff:
        raise AccountError("Only staff roles can be changed here.")
    if user.id == actor.id:
        raise AccountError("You cannot change your own role.")
    previous = user.role
    user.role = role
    audit.record(
        "staff.role_changed", now=now, actor=actor, subject_user=user, details=f"{previous} -> {role}", commit=False
    )
    db.session.commit()
    revoke_all_sessions(user, now)
    end_all_for(user, now, "role_revoked")


def set_active(user: User, active: bool, *, actor: User, now: datetime) -> None:
    """Deactivate (every session ends) or reactivate a staff user."""
    if user.id == actor.id:
        raise AccountError("You cannot deactivate yourself.")
    user.active = active
    audit.record(
        "staff.activated" if active else "staff.deactivated", now=now, actor=actor, subject_user=user, commit=False
    )
    db.session.commit()
    if not active:
        revoke_all_sessions(user, now)
        end_all_for(user, now, "role_revoked")
