"""The dashboard's fragments as htmx asks for them: its own URLs and the Instagram actions render them here."""

from __future__ import annotations

from flask import current_app, flash, g, make_response, redirect, render_template, url_for
from flask_login import current_user

from webapp.dashboard import presenter
from webapp.htmx import hx_trigger, is_fragment_request, vary_on_htmx


def card_response(
    message: str | None = None,
    level: str = "info",
    changed: bool = True,
    seen: str | None = None,
    told: str | None = None,
    told_until: int | None = None,
):
    """The card fragment for htmx (with `connection-changed` after an action), or back to the page.

    A poll passes what its page last `seen`: when the connection changed since, the answer carries
    `connection-changed` too, so the diagnosis, the activity and the notification count follow within
    one poll, and a change of state comes with a short notice. The notice stays on the card for
    CHANGE_NOTICE_SECONDS: the polls that follow pass what it was about (`told`) and until when.
    """
    if is_fragment_request():
        # Loaded with the user in one query (see accounts.user_with_live_session): this fragment is
        # polled by every open dashboard.
        connection = current_user.shop.instagram_connection
        card = presenter.card_view(connection, g.now)
        now_seconds = int(g.now.timestamp())
        if seen is not None and seen != card.seen:
            changed = True
            told, told_until = seen, now_seconds + current_app.config["CHANGE_NOTICE_SECONDS"]
        elif told is None or told_until is None or told_until <= now_seconds:
            told = told_until = None
        notice = presenter.change_notice(told, card)
        if notice is None:
            told = told_until = None
        elif message is None:
            message, level = notice, "info"
        html = render_template(
            "dashboard/_card.html",
            connection=connection,
            card=card,
            card_message=message,
            card_level=level,
            told=told,
            told_until=told_until,
        )
        response = make_response(html)
        return vary_on_htmx(hx_trigger(response, "connection-changed") if changed else response)
    if message:
        flash(message, level)
    return vary_on_htmx(redirect(url_for("dashboard.index")))


def what_happened_response():
    """The "What happened" panel for htmx, or back to the page."""
    if not is_fragment_request():
        return vary_on_htmx(redirect(url_for("dashboard.index")))
    context = presenter.merchant_dashboard(current_user.shop, g.now)
    return vary_on_htmx(make_response(render_template("dashboard/_diagnosis.html", **context)))
