"""A fleet incident as merchants and support see it: one calm banner, the timeline, the shops it touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_connection, make_user
from webapp.dashboard import presenter
from webapp.extensions import db as _db
from webapp.models import ConnectionEvent, FleetIncident, FleetIncidentUpdate
from webapp.services import webhooks
from webapp.services.connections.causes import CAUSES, CauseId
from webapp.services.connections.diagnosis import store_diagnosis

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.usefixtures("pinned_clock")
HX = {"HX-Request": "true"}


@pytest.fixture
def now() -> datetime:
    return NOW


def open_incident(opened_at: datetime = NOW - timedelta(minutes=20), **fields) -> FleetIncident:
    incident = FleetIncident(
        scope="meta",
        opened_at=opened_at,
        causes="provider_error",
        failing_at_open=40,
        checked_at_open=50,
        peak_failing=45,
        peak_percent=90,
        **fields,
    )
    _db.session.add(incident)
    _db.session.add(
        FleetIncidentUpdate(
            incident=incident,
            occurred_at=opened_at,
            kind="opened",
            checked=50,
            failing=40,
            message="Incident opened: Meta is failing for much of the fleet.",
        )
    )
    _db.session.commit()
    return incident


def in_trouble(shop, state="degraded", cause=CauseId.PROVIDER_ERROR, code=2):
    """A connection whose last check failed (a Meta 500, code 2 by default), its diagnosis stored."""
    connection = make_connection(shop)
    connection.state, connection.cause, connection.state_changed_at = state, cause, NOW - timedelta(minutes=15)
    connection.last_error_code, connection.last_error_message = code, "An unexpected error has occurred."
    _db.session.add(
        ConnectionEvent(
            connection_id=connection.id,
            kind="check_failed",
            occurred_at=NOW - timedelta(minutes=15),
            cause=cause,
            meta_code=code,
            state_after=state,
        )
    )
    store_diagnosis(connection, NOW)
    _db.session.commit()
    return connection


def test_a_merchant_in_the_incident_sees_one_calm_banner_not_their_own_alarm(client, merchant, db):
    in_trouble(merchant.shop)
    open_incident()
    page = client.get("/").get_data(as_text=True)
    assert presenter.INCIDENT_BANNER in page and "incident-banner" in page
    assert presenter.INCIDENT_SENTENCE in page and "Instagram is having trouble</span>" in page
    assert presenter.STATE_LABELS["degraded"][0] not in page
    panel = client.get("/what-happened", headers=HX).get_data(as_text=True)
    assert presenter.INCIDENT_BANNER_DETAIL in panel
    assert "checklist" not in panel and "diagnosis-empty" not in panel


def test_the_card_fragment_carries_the_banner_and_tells_an_open_page(client, merchant, db):
    connection = in_trouble(merchant.shop)
    seen_before = f"{connection.version}-degraded"
    incident = open_incident()
    response = client.get(f"/card?seen={seen_before}", headers=HX)
    body = response.get_data(as_text=True)
    assert "<html" not in body and presenter.INCIDENT_BANNER in body
    assert f"seen={connection.version}-degraded-i{incident.id}" in body
    assert response.headers["HX-Trigger"] == "connection-changed"  # the panel fetches its calm words
    assert presenter.INCIDENT_NOTICE in body
    again = client.get(f"/card?seen={connection.version}-degraded-i{incident.id}", headers=HX)
    assert "HX-Trigger" not in again.headers and presenter.INCIDENT_NOTICE not in again.get_data(as_text=True)


def test_a_healthy_shop_sees_the_banner_and_its_own_good_state(client, merchant, db):
    make_connection(merchant.shop)
    open_incident()
    body = client.get("/card", headers=HX).get_data(as_text=True)
    assert presenter.INCIDENT_BANNER in body and "Connected</span>" in body
    assert presenter.INCIDENT_SENTENCE not in body


def test_a_disconnect_meta_confirmed_is_shown_as_it_is(client, merchant, db):
    """A revocation during an outage is real: the card still says so, under the banner."""
    in_trouble(merchant.shop, state="needs_reconnect", cause=CauseId.PASSWORD_CHANGED, code=190)
    open_incident()
    page = client.get("/").get_data(as_text=True)
    assert presenter.INCIDENT_BANNER in page and "Disconnected by Instagram" in page
    assert "checklist" in page and presenter.INCIDENT_SENTENCE not in page


def test_no_incident_no_banner(client, merchant, db):
    in_trouble(merchant.shop)
    open_incident(closed_at=NOW - timedelta(minutes=1))
    body = client.get("/").get_data(as_text=True)
    assert presenter.INCIDENT_BANNER not in body and presenter.STATE_LABELS["degraded"][0] in body


def test_support_sees_the_incident_on_the_fleet_overview_and_its_own_page(client, auth, db):
    touched = in_trouble(make_user().shop)
    in_trouble(make_user().shop, state="needs_reconnect", cause=CauseId.PASSWORD_CHANGED, code=190)
    incident = open_incident()
    auth.login_as(make_user(role="support"))
    overview = client.get("/support/").get_data(as_text=True)
    assert 'id="fleet-incident"' in overview and f"/support/incidents/{incident.id}" in overview
    listing = client.get("/support/incidents").get_data(as_text=True)
    assert f"Incident {incident.id}" in listing and "<strong>open</strong>" in listing
    detail = client.get(f"/support/incidents/{incident.id}").get_data(as_text=True)
    assert "Incident opened: Meta is failing" in detail and "40 of 50 connections" in detail
    assert f"/support/shops/{touched.shop_id}" in detail
    assert detail.count("/support/shops/") == 1  # the revoked shop is not the incident's
    # Support still sees the shop's own diagnosis, not the merchant's calm words.
    shop_page = client.get(f"/support/shops/{touched.shop_id}").get_data(as_text=True)
    panel = shop_page[shop_page.index('id="diagnosis-panel"') :]
    assert CAUSES[CauseId.PROVIDER_ERROR].title in panel and presenter.INCIDENT_BANNER_DETAIL not in panel


def test_incident_pages_are_for_staff_and_unknown_ones_are_404(client, auth, merchant, db):
    incident = open_incident()
    assert client.get("/support/incidents").status_code == 403
    assert client.get(f"/support/incidents/{incident.id}").status_code == 403
    auth.logout()
    auth.login_as(make_user(role="support"))
    assert client.get("/support/incidents/999999").status_code == 404
    assert client.get("/support/incidents/99999999999999999999").status_code == 404
    assert client.get(f"/support/incidents/{incident.id}?page=999999").status_code == 404


def test_an_incident_event_shows_in_the_webhook_delivery_log(client, auth, db):
    """A fleet event names no shop: the admin's delivery log lists it all the same."""
    webhooks.create_endpoint(
        url="https://platform.example/hooks", description="", event_types=["incident.opened"], created_by="t", now=NOW
    )
    webhooks.emit_fleet(webhooks.INCIDENT_OPENED, NOW, {"incident_id": 1, "status": "open"})
    _db.session.commit()
    auth.login_as(make_user(role="admin"))
    response = client.get("/admin/webhooks/deliveries")
    assert response.status_code == 200 and "incident.opened" in response.get_data(as_text=True)
    with pytest.raises(ValueError):
        webhooks.emit_fleet(webhooks.STATE_CHANGED, NOW, {})
