"""Webhook endpoints over the Platform API (`webhooks:manage`): list, add with a secret shown once, disable.

They call webapp/services/webhooks.py.
"""

from __future__ import annotations

import pytest

from tests.api_helpers import PROBLEM, make_key
from webapp.services import webhooks

pytestmark = pytest.mark.usefixtures("pinned_clock")

URL = "https://platform.example/hooks/instagram"


@pytest.fixture
def headers():
    return make_key("webhooks:manage")[1]


def add(client, headers, **body):
    return client.post("/api/v1/webhooks", headers=headers, json={"url": URL, **body})


def test_an_endpoint_is_added_with_its_secret_shown_once(client, headers, now):
    response = add(client, headers, description="sync service", event_types=[webhooks.EVENT_TYPES[0]])
    assert response.status_code == 201
    body = response.get_json()
    assert body["url"] == URL and body["description"] == "sync service"
    assert body["event_types"] == [webhooks.EVENT_TYPES[0]] and body["disabled_at"] is None
    assert body["secret"].startswith("whsec_") and response.headers["Cache-Control"] == "no-store"
    listed = client.get("/api/v1/webhooks", headers=headers)
    assert listed.status_code == 200
    assert [endpoint["id"] for endpoint in listed.get_json()["endpoints"]] == [body["id"]]
    assert body["secret"] not in listed.get_data(as_text=True)


def test_every_event_type_when_none_is_named(client, headers):
    assert add(client, headers).get_json()["event_types"] == list(webhooks.EVENT_TYPES)


@pytest.mark.parametrize(
    "body",
    [
        {"url": "not a url"},
        {"url": "ftp://platform.example/hooks"},
        {"url": URL, "event_types": ["connection.exploded"]},
        {"url": URL, "event_types": []},
        {"url": URL, "description": "x" * 256},
        {"description": "no url"},
    ],
)
def test_a_bad_endpoint_is_a_422_problem(client, headers, body):
    response = client.post("/api/v1/webhooks", headers=headers, json=body)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert client.get("/api/v1/webhooks", headers=headers).get_json()["endpoints"] == []


def test_an_endpoint_is_disabled_and_stays_listed(client, headers):
    endpoint_id = add(client, headers).get_json()["id"]
    assert client.delete(f"/api/v1/webhooks/{endpoint_id}", headers=headers).status_code == 204
    assert client.delete(f"/api/v1/webhooks/{endpoint_id}", headers=headers).status_code == 204  # still disabled
    (listed,) = client.get("/api/v1/webhooks", headers=headers).get_json()["endpoints"]
    assert listed["id"] == endpoint_id and listed["disabled_at"] is not None


def test_disabling_an_unknown_endpoint_is_a_404_problem(client, headers):
    response = client.delete("/api/v1/webhooks/999", headers=headers)
    assert response.status_code == 404 and response.mimetype == PROBLEM


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/v1/webhooks"), ("POST", "/api/v1/webhooks"), ("DELETE", "/api/v1/webhooks/1")]
)
def test_each_webhook_endpoint_needs_its_scope(client, method, path):
    _, headers = make_key("status:read", "token:read", "errors:write")
    response = client.open(path, method=method, headers=headers, json={"url": URL})
    assert response.status_code == 403 and response.get_json()["required_scope"] == "webhooks:manage"
    assert client.open(path, method=method, json={"url": URL}).status_code == 401
