"""Signed webhooks to the shop platform: its endpoints, and the events written where connections change.

Each event is added in the transaction of the change it reports (an outbox): a change that is rolled
back emits nothing, a committed one is delivered at least once to every endpoint subscribed to its
type, and every attempt carries the same event id. The worker sends them (webhook_delivery.py);
no payload ever holds a token, and an endpoint's secret is shown once and never logged.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import secrets
import socket
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import SplitResult, urlsplit

from flask import current_app, has_request_context, request
from sqlalchemy import Select, select, update
from sqlalchemy.orm import joinedload

from webapp.extensions import db
from webapp.models import (
    ConnectionState,
    InstagramConnection,
    LoginPath,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from webapp.services.connections.causes import CAUSES, words_for
from webapp.services.runtime import token_vault

log = logging.getLogger(__name__)

STATE_CHANGED = "connection.state_changed"
RECONNECTED = "connection.reconnected"
EXPIRING = "connection.expiring"
ACCESS_RENEWED = "connection.access_renewed"
INCIDENT_OPENED = "incident.opened"
INCIDENT_CLOSED = "incident.closed"
EVENT_TYPES: tuple[str, ...] = (STATE_CHANGED, RECONNECTED, EXPIRING, ACCESS_RENEWED, INCIDENT_OPENED, INCIDENT_CLOSED)
# Events about the whole fleet (Meta itself failing), not one connection: their `data` has no shop basics.
FLEET_EVENT_TYPES = (INCIDENT_OPENED, INCIDENT_CLOSED)

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64 random bytes
URL_MAX_LENGTH = 2000
DESCRIPTION_MAX_LENGTH = 255
DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")


class EndpointRefused(ValueError):
    """An endpoint cannot be created as asked; the message says why in one sentence, `field` which input it was."""

    def __init__(self, message: str, field: str = "url"):
        super().__init__(message)
        self.field = field  # url | description | event_types


class DeliveryNotRequeued(ValueError):
    """A delivery cannot be sent again (unknown, still being sent, or its endpoint is disabled)."""


def new_secret() -> str:
    """A fresh signing secret in the form the standardwebhooks libraries read: `whsec_<base64>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def create_endpoint(
    *, url: str, description: str, event_types: list[str], created_by: str, now: datetime
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint and commit it; return it with its secret, which is shown this once.

    Raises EndpointRefused (a ValueError) for a URL that is not http(s) with a host, http in
    production, credentials in the URL, or an event type that is not one of EVENT_TYPES.
    """
    production = current_app.config.get("PRODUCTION", False)
    checked_url = check_url(url, allow_http=not production, allow_private=not production, own_origins=_own_origins())
    types = check_event_types(event_types)
    description = " ".join((description or "").split())
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise EndpointRefused(f"Keep the description under {DESCRIPTION_MAX_LENGTH} characters.", "description")
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=checked_url,
        description=description,
        event_types=",".join(types),
        secret_ciphertext=token_vault().encrypt(secret),
        created_by=created_by[:300],
        created_at=now,
    )
    db.session.add(endpoint)
    db.session.commit()
    log.info("webhook endpoint %s created for %s by %s", endpoint.id, ",".join(types), created_by)
    return endpoint, secret


def _own_origins() -> list[str]:  # the origins check_url refuses
    """Where this dashboard itself answers: its public origin, the local one, and the host this request came to."""
    config = current_app.config
    origins = [config.get("PUBLIC_BASE_URL"), config.get("LOCAL_BASE_URL")]
    if has_request_context():
        origins.append(request.host_url)
    return [origin for origin in origins if origin]


def _host_and_port(parts: SplitResult) -> tuple[str, int | None]:
    default = {"https": 443, "http": 80}.get(parts.scheme)
    return (parts.hostname or "").rstrip(".").lower(), parts.port or default


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `host` spells, in any form the resolver reads (127.1, 2130706433, 0x7f.0.0.1, ::1)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # ::ffff:127.0.0.1 is 127.0.0.1
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return mapped or address
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def check_url(url: str, *, allow_http: bool, allow_private: bool = True, own_origins: Sequence[str] = ()) -> str:
    """The receiver's URL as it will be called, or EndpointRefused saying what is wrong with it.

    `own_origins` are this dashboard's own: a webhook sent to itself only fails, for 24 hours.
    Without `allow_private` (production) an address that is not on the public internet (loopback,
    private networks, link-local such as a cloud's metadata service) is refused.
    """
    url = (url or "").strip()
    if not url:
        raise EndpointRefused("Enter the URL that receives the webhooks.")
    if len(url) > URL_MAX_LENGTH:
        raise EndpointRefused(f"The URL is longer than {URL_MAX_LENGTH} characters.")
    if any(character.isspace() or ord(character) < 32 or ord(character) == 127 for character in url):
        raise EndpointRefused("The URL cannot contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it checks the port is a number in range)
    except ValueError as error:
        raise EndpointRefused(f"The URL cannot be read ({error}).") from error
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        needed = "http:// or https://" if allow_http else "https:// (production sends webhooks over TLS only)"
        raise EndpointRefused(f"The URL must start with {needed}.")
    if not parts.hostname:
        raise EndpointRefused("The URL needs a host name, e.g. https://platform.example/hooks/instagram.")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("Put no user name or password in the URL: each delivery is signed instead.")
    if parts.fragment:
        raise EndpointRefused("The URL cannot have a #fragment: it is never sent to the server.")
    host, port = _host_and_port(parts)
    for origin in own_origins:
        own_host, own_port = _host_and_port(urlsplit(origin))
        if own_port == port and (own_host == host or _same_address(own_host, host)):
            raise EndpointRefused(
                "That URL is this dashboard itself: give the address of the service that receives them."
            )
    if not allow_private:
        address = _address(host)
        if host == "localhost" or host.endswith(".localhost") or (address is not None and not address.is_global):
            raise EndpointRefused(
                "The URL must reach a public address: loopback, private-network and link-local addresses are refused."
            )
    return url


def _same_address(one: str, other: str) -> bool:
    first = _address(one)
    return first is not None and first == _address(other)


def check_event_types(event_types: list[str]) -> list[str]:
    """The event types asked for, known ones only, in EVENT_TYPES order; EndpointRefused otherwise."""
    asked = {name.strip() for name in event_types if name and name.strip()}
    unknown = sorted(asked - set(EVENT_TYPES))
    if unknown:
        raise EndpointRefused(
            f"Unknown event type{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
            f"choose from {', '.join(EVENT_TYPES)}.",
            "event_types",
        )
    if not asked:
        raise EndpointRefused(f"Choose at least one event type: {', '.join(EVENT_TYPES)}.", "event_types")
    return [name for name in EVENT_TYPES if name in asked]


def list_endpoints() -> list[WebhookEndpoint]:
    """Every endpoint, enabled ones first, oldest first within each."""
    return list(
        db.session.scalars(
            select(WebhookEndpoint).order_by(WebhookEndpoint.disabled_at.is_not(None), WebhookEndpoint.id)
        )
    )


def deliveries(*, endpoint_id: int | None = None, status: str | None = None) -> Select[tuple[WebhookDelivery]]:
    """The delivery log, newest first, optionally for one endpoint or one status (for paging)."""
    query = (
        select(WebhookDelivery)
        .options(joinedload(WebhookDelivery.event), joinedload(WebhookDelivery.endpoint))
        .order_by(WebhookDelivery.id.desc())
    )
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    return query


def disable_endpoint(endpoint_id: int, now: datetime) -> bool:
    """Stop sending to an endpoint and commit; False when there is no such endpoint or it was off already.

    Its deliveries still waiting are marked failed (a disabled endpoint is never called again); one
    being sent at this moment finishes.
    """
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.disabled_at is not None:
        return False
    endpoint.disabled_at = now
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(status="failed", next_attempt_at=None, last_error="The endpoint was disabled before delivery.")
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    log.info("webhook endpoint %s disabled", endpoint_id)
    return True


def send_again(delivery_id: int, now: datetime) -> WebhookDelivery:
    """Queue a delivery again, at once and with a new retry window, under the same event id; commit.

    Raises DeliveryNotRequeued when there is no such delivery, it is being sent right now, or its
    endpoint is disabled.
    """
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise DeliveryNotRequeued("There is no webhook delivery with that number.")
    if not delivery.endpoint.enabled:
        raise DeliveryNotRequeued("Its endpoint is disabled: nothing is sent to it any more.")
    if delivery.status == "sending":
        raise DeliveryNotRequeued("It is being sent right now; its outcome shows here in a moment.")
    # A new claim token fences out any late outcome of an earlier attempt.
    delivery.status, delivery.claim_token, delivery.lease_expires_at = "pending", None, None
    delivery.attempts = 0
    delivery.queued_at = delivery.next_attempt_at = now
    db.session.commit()
    log.info("webhook delivery %s (event %s) queued again", delivery.id, delivery.event.event_id)
    return delivery


def emit(connection: InstagramConnection, type: str, now: datetime, data: dict) -> WebhookEvent | None:
    """Add an event, and a delivery for each enabled endpoint subscribed to its type, to the caller's transaction.

    Nothing is written when no endpoint wants the type. The body's `data` is the connection's
    basics (shop, account, path, state) with `data` on top; never a token.
    """
    if type not in EVENT_TYPES or type in FLEET_EVENT_TYPES:
        raise ValueError(f"{type!r} is not a connection's webhook event type; the types are {', '.join(EVENT_TYPES)}.")
    endpoints = _subscribed(type)
    if not endpoints:
        return None
    if connection.id is None:
        db.session.flush()
    event = WebhookEvent(
        event_id=new_event_id(),
        type=type,
        shop_id=connection.shop_id,
        connection_id=connection.id,
        payload=_connection_basics(connection) | data,
        occurred_at=now,
    )
    return _queue(event, endpoints, now)


def emit_fleet(type: str, now: datetime, data: dict) -> WebhookEvent | None:
    """Add an event about the whole fleet (a Meta incident) to the caller's transaction, like `emit`."""
    if type not in FLEET_EVENT_TYPES:
        raise ValueError(f"{type!r} is not a fleet webhook event type; those are {', '.join(FLEET_EVENT_TYPES)}.")
    endpoints = _subscribed(type)
    if not endpoints:
        return None
    event = WebhookEvent(
        event_id=new_event_id(), type=type, shop_id=None, connection_id=None, payload=data, occurred_at=now
    )
    return _queue(event, endpoints, now)


def _subscribed(type: str) -> list[WebhookEndpoint]:
    # No autoflush: the caller is midway through changing the connection; its flush stays its own.
    with db.session.no_autoflush:
        return [
            endpoint
            for endpoint in db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.disabled_at.is_(None)))
            if type in endpoint.types
        ]


def _queue(event: WebhookEvent, endpoints: list[WebhookEndpoint], now: datetime) -> WebhookEvent:
    db.session.add(event)
    for endpoint in endpoints:
        db.session.add(
            WebhookDelivery(event=event, endpoint_id=endpoint.id, status="pending", queued_at=now, next_attempt_at=now)
        )
    return event


def _connection_basics(connection: InstagramConnection) -> dict:
    return {
        "shop_id": connection.shop_id,
        "connection_id": connection.id,
        "username": connection.username,
        "login_path": str(connection.login_path or LoginPath.INSTAGRAM),
        "state": str(connection.state),
        "cause": connection.cause,
    }


def state_changed(connection: InstagramConnection, previous_state: str, now: datetime) -> None:
    """Emit `connection.state_changed` (and `connection.expiring` when it now expires); set_state calls this."""
    diagnosis = diagnosis_summary(connection)
    changed = emit(connection, STATE_CHANGED, now, {"previous_state": str(previous_state), "diagnosis": diagnosis})
    expiring = None
    if connection.state == ConnectionState.EXPIRING:
        ends = timestamp(connection.token_expires_at)
        expiring = emit(connection, EXPIRING, now, {"token_expires_at": ends, "diagnosis": diagnosis})
    for event in (changed, expiring):
        if event is not None and connection.id is not None:
            _awaiting_diagnosis()[connection.id].append(event)


def connection_linked(
    connection: InstagramConnection,
    kind: str,
    *,
    previous_state: str,
    previous_login_path: str,
    previous_expires_at: datetime | None,
    now: datetime,
) -> None:
    """Emit `connection.reconnected` for a login the merchant finished (connected, reconnected, switched_account),
    and `connection.access_renewed` when a Facebook Login reconnect moved the access window's end later."""
    emit(
        connection,
        RECONNECTED,
        now,
        {
            "kind": kind,
            "previous_state": str(previous_state),
            "token_expires_at": timestamp(connection.token_expires_at),
        },
    )
    renewed = (
        kind == "reconnected"
        and previous_login_path == LoginPath.FACEBOOK
        and connection.login_path == LoginPath.FACEBOOK
        and previous_expires_at is not None
        and connection.token_expires_at is not None
        and connection.token_expires_at > previous_expires_at
    )
    if renewed:
        emit(
            connection,
            ACCESS_RENEWED,
            now,
            {
                "previous_expires_at": timestamp(previous_expires_at),
                "token_expires_at": timestamp(connection.token_expires_at),
            },
        )


def diagnosis_stored(connection: InstagramConnection) -> None:
    """Put the diagnosis just stored into the events this transaction emitted for the connection.

    Writers move the state first and store the diagnosis of the new trouble after, in the same
    transaction; the events must carry the diagnosis that is committed with them.
    """
    if connection.id is None:
        return
    summary = diagnosis_summary(connection)
    for event in _awaiting_diagnosis().get(connection.id, []):
        event.payload = event.payload | {"diagnosis": summary}  # a new dict: JSON columns track assignment only


def _awaiting_diagnosis() -> defaultdict[int, list[WebhookEvent]]:
    """Events emitted in the session's current transaction, by connection id (a new transaction starts empty)."""
    session = db.session()  # the scoped session's own Session: the proxy does not offer get_transaction
    transaction = session.get_transaction()
    info = session.info
    if info.get("webhooks_transaction") is not transaction:
        info["webhooks_transaction"] = transaction
        info["webhooks_emitted"] = defaultdict(list)
    return info["webhooks_emitted"]


def diagnosis_summary(connection: InstagramConnection) -> dict | None:
    """The stored diagnosis's likeliest cause with its evidence, if one explains the connection as it is."""
    record = connection.diagnosis
    if not isinstance(record, dict):
        return None
    if record.get("state") != connection.state or record.get("cause") != connection.cause:
        return None  # a stale one, of earlier trouble
    causes = record.get("causes") or []
    if not causes or causes[0].get("cause") not in CAUSES:
        return None
    primary = causes[0]
    return {
        "cause": primary["cause"],
        "confidence": primary.get("confidence"),
        "title": words_for(primary["cause"], connection.login_path).title,
        "evidence": list(primary.get("evidence") or []),
        "diagnosed_at": timestamp(connection.diagnosed_at),
    }


def forget_account(connection_ids: set[int]) -> None:
    """Blank the Instagram account in these connections' stored events: name, evidence (a data-deletion request).

    An event sent again afterwards goes out without it; its id stays the same.
    """
    if not connection_ids:
        return
    for event in db.session.scalars(select(WebhookEvent).where(WebhookEvent.connection_id.in_(connection_ids))):
        _blank_account(event)


def forget_earlier_account(connection_id: int, until: datetime, current_username: str | None) -> None:
    """Blank an account a connection has switched away from in its events up to the switch (a data-deletion request).

    Events from then that name the account the shop uses now (the switch's own `reconnected`) keep it.
    """
    events = db.session.scalars(
        select(WebhookEvent).where(WebhookEvent.connection_id == connection_id, WebhookEvent.occurred_at <= until)
    )
    for event in events:
        if current_username is None or event.payload.get("username") != current_username:
            _blank_account(event)


def _blank_account(event: WebhookEvent) -> None:
    blanked: dict = {"username": None}
    if event.payload.get("diagnosis"):
        blanked["diagnosis"] = event.payload["diagnosis"] | {"evidence": []}  # evidence may name the account
    event.payload = event.payload | blanked  # a new dict: JSON columns track assignment only


def timestamp(moment: datetime | None) -> str | None:
    """A UTC time as webhook bodies write it: ISO 8601 with a Z."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
