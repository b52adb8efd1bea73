"""The words of each notice: the mail's subject and bodies, and the in-app title."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from flask import Flask, render_template, url_for

from webapp.models import InstagramConnection, User
from webapp.services.connections.causes import DATA_ACCESS_WINDOW
from webapp.services.connections.diagnosis import current_diagnosis
from webapp.services.notify.links import reconnect_token, unsubscribe_token

if TYPE_CHECKING:  # planning imports this module to word its notices
    from webapp.services.notify.planning import Notice


def base_url(app: Flask) -> str:
    return app.config.get("PUBLIC_BASE_URL") or app.config["LOCAL_BASE_URL"]


def account_words(connection: InstagramConnection) -> str:
    """The account a mail is about, in brackets after the shop: "@tea_house, through your Facebook Page “Tea House”"."""
    parts = [f"@{connection.username}"] if connection.username else []
    if connection.via_facebook and connection.facebook_page_name:
        parts.append(f"through your Facebook Page “{connection.facebook_page_name}”")
    return ", ".join(parts)


def compose_notice(app: Flask, notice: Notice, connection: InstagramConnection, person: User, now: datetime) -> dict:
    """Subject, text and HTML of one notice for one person, with working links."""
    diagnosis = current_diagnosis(connection, now) if notice.kind != "restored" else None
    primary = diagnosis.primary if diagnosis else None
    with app.test_request_context(base_url=base_url(app)):
        links = {
            "dashboard": url_for("dashboard.index", _external=True),
            "reconnect": url_for(
                "instagram.reconnect_link", token=reconnect_token(app, connection.id, person.id), _external=True
            ),
            "help": url_for("dashboard.why_disconnects", _external=True) + (f"#{primary.cause.id}" if primary else ""),
            "settings": url_for("notifications.settings", _external=True),
            "unsubscribe": url_for(
                "notifications.unsubscribe", token=unsubscribe_token(app, person.id), _external=True
            ),
        }
        shop = connection.shop.name
        flapping = notice.breaks_since > 0
        subjects = {
            "disconnected": f"Instagram keeps disconnecting from {shop}: please reconnect"
            if flapping
            else f"Instagram is disconnected from {shop}: please reconnect",
            "reminder": f"Reminder: Instagram is still disconnected from {shop}",
            "expiry_warning": f"Instagram connection for {shop} ends in {notice.days} days",
            "restored": f"Instagram is connected again for {shop}",
            "reconnect_link": f"Your link to reconnect Instagram for {shop}",
        }
        titles = dict(IN_APP_TITLES)
        if connection.via_facebook:
            # Nobody renews Facebook Login's access but the merchant: the warning asks them to.
            # The date, not the warning's bucket: a window may be nearer its end than the bucket's days.
            ends = connection.token_expires_at
            subjects["expiry_warning"] = f"Renew access: Instagram for {shop} stops on {ends:%-d %b %Y}"
            titles["expiry_warning"] = "Renew access to Instagram through Facebook"
        context = {
            "notice": notice,
            "connection": connection,
            "person": person,
            "shop": shop,
            "cause": primary.cause if primary else None,
            "confidence": primary.confidence if primary else None,
            "pattern": primary.pattern if primary else None,
            "checklist": primary.checklist if primary else [],
            "meta_user_title": diagnosis.meta_user_title if diagnosis else None,
            "meta_user_message": diagnosis.meta_user_message if diagnosis else None,
            "links": links,
            "account": account_words(connection),
            "via_facebook": connection.via_facebook,
            "window_days": DATA_ACCESS_WINDOW.days,
            "reconnect_label": "Reconnect through Facebook" if connection.via_facebook else "Reconnect Instagram",
            "expires_at": connection.token_expires_at,
            "failing_since": connection.failing_since,
            "broken_at": connection.incident_started_at,
            "healthy_since": connection.state_changed_at,
        }
        text = render_template(f"mail/{notice.kind}.txt", **context)
        html = render_template(f"mail/{notice.kind}.html", **context)
        summary = render_template("mail/_flapping.txt", **context).strip() if flapping else ""
    return {
        "title": titles[notice.kind],
        "subject": subjects[notice.kind],
        "in_app": f"{subjects[notice.kind]}. {summary}" if summary else subjects[notice.kind],
        "text": text,
        "html": html,
        "link": links["reconnect"] if notice.kind != "restored" else links["dashboard"],
        "unsubscribe": links["unsubscribe"] if notice.optional_preference else links["settings"],
    }


IN_APP_TITLES = {
    "disconnected": "Instagram is disconnected",
    "reminder": "Instagram is still disconnected",
    "expiry_warning": "Instagram connection ends soon",
    "restored": "Instagram is connected again",
    "reconnect_link": "Support sent you a reconnect link",
}


# An old notice whose Reconnect no longer applies says why, instead of offering a dead button.
PAST_NOTICE_WORDS = {
    "disconnected": "This disconnection is over.",
    "reminder": "This disconnection is over.",
    "expiry_warning": "This warning no longer applies.",
    "reconnect_link": "This link has expired, or Instagram was reconnected since.",
}
