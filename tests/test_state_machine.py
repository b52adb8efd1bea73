"""Promise 11: the health page never lies.

A state machine drives one connection through refreshes, transient failures, auth failures,
deauthorize callbacks, reconnects and days passing; after every step the card the merchant sees
must show the state a simple model predicts.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import requests_mock as requests_mock_module
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import delete

from tests.factories import make_shop, make_user
from webapp.dashboard.presenter import EXPIRED_LABEL, STATE_LABELS
from webapp.models import ConnectionEvent, InstagramConnection, MetaCallback, PendingConnection, SchedulerTick
from webapp.services.connections import linking, meta_requests, state
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.keepalive import leases, outcomes, scheduler
from webapp.services.keepalive.policy import Policy
from webapp.services.meta.client import TokenGrant

GRAPH = "https://graph.instagram.com"
POLICY = Policy()
USER_ID = "17841400000000077"


def test_the_card_always_matches_the_model(app, client, auth, db):
    """Promise 11."""
    merchant = make_user(shop=make_shop())
    auth.login_as(merchant)
    vault = app.extensions["token_vault"]
    meta = app.extensions["instagram_client"]

    class HealthPage(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            db.session.execute(delete(ConnectionEvent))
            db.session.execute(delete(PendingConnection))
            db.session.execute(delete(MetaCallback))
            db.session.execute(delete(SchedulerTick))
            db.session.execute(delete(InstagramConnection))
            db.session.commit()
            self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
            self.state = "not_connected"
            self.expired = False  # the card words an expiry we detected as 'Expired'
            self.token = False
            self.issued_at = self.expires_at = None
            self.generation = 0

        # --- helpers -------------------------------------------------------------------------
        def connection(self) -> InstagramConnection:
            db.session.expire_all()
            return state.connection_for(merchant.shop)

        def manual(self, work: str, mock_setup) -> str:
            with requests_mock_module.Mocker() as mocker:
                mock_setup(mocker)
                claims = leases.claim_due(
                    owner="machine",
                    now=self.now,
                    limit=1,
                    policy=POLICY,
                    vault=vault,
                    connection_id=self.connection().id,
                    manual_work=work,
                )
                assert len(claims) == 1
                outcome = outcomes.call_meta(claims[0], meta)
                return outcomes.record_outcome(
                    claims[0], outcome, now=self.now, policy=POLICY, vault=vault, rng=random.Random(0)
                )

        def usable(self) -> bool:
            return self.token and self.expires_at > self.now

        # --- rules ---------------------------------------------------------------------------
        @rule()
        def reconnect(self):
            self.generation += 1
            token = f"IGAAmachine-{self.generation}"
            with requests_mock_module.Mocker() as mocker:
                mocker.get(f"{GRAPH}/access_token", json={"access_token": token, "expires_in": 5184000})
                mocker.get(f"{GRAPH}/v23.0/me", json={"user_id": USER_ID, "username": "machine_shop"})
                linking.complete_connect(
                    shop=merchant.shop,
                    user=merchant,
                    short_grant=TokenGrant(access_token="IGQVshort"),
                    client=meta,
                    vault=vault,
                    now=self.now,
                    client_fingerprint=ClientFingerprint("203.0.113.0/24", "Chrome on Linux"),
                    policy=POLICY,
                )
            self.state, self.token = "healthy", True
            self.expired = False
            self.issued_at, self.expires_at = self.now, self.now + timedelta(seconds=5184000)

        @precondition(lambda self: self.usable() and self.state != "needs_reconnect")
        @rule()
        def check_ok(self):
            self.manual("check", lambda m: m.get(f"{GRAPH}/v23.0/me", json={"user_id": USER_ID}))
            self.state = "healthy"
            self.expired = False

        @precondition(
            lambda self: (
                self.usable() and self.state != "needs_reconnect" and self.now - self.issued_at >= timedelta(hours=24)
            )
        )
        @rule()
        def refresh_ok(self):
            self.generation += 1
            token = f"IGAAmachine-{self.generation}"
            self.manual(
                "refresh",
                lambda m: m.get(f"{GRAPH}/refresh_access_token", json={"access_token": token, "expires_in": 5184000}),
            )
            self.state = "healthy"
            self.expired = False
            self.issued_at, self.expires_at = self.now, self.now + timedelta(seconds=5184000)

        @precondition(lambda self: self.usable())
        @rule()
        def transient_failure(self):
            self.manual("check", lambda m: m.get(f"{GRAPH}/v23.0/me", status_code=503, text="upstream down"))
            if self.state != "needs_reconnect":
                close = self.expires_at - self.now <= POLICY.expiry_warning
                self.state = "expiring" if close else "degraded"
                self.expired = False

        @precondition(lambda self: self.usable())
        @rule()
        def auth_failure(self):
            body = {
                "error": {
                    "message": "Error validating access token: The session is invalid because the user logged out.",
                    "type": "OAuthException",
                    "code": 190,
                    "error_subcode": 467,
                }
            }
            self.manual("check", lambda m: m.get(f"{GRAPH}/v23.0/me", status_code=400, json=body))
            self.state = "needs_reconnect"
            self.expired = False

        @rule()
        def deauthorize_callback(self):
            changed = meta_requests.apply_deauthorize(
                USER_ID, int(self.now.timestamp()) + 1, self.now + timedelta(seconds=1)
            )
            if self.token:
                assert changed == 1
                self.state, self.token = "needs_reconnect", False
                self.expired = False
            self.now += timedelta(seconds=2)

        @rule()
        def a_day_passes(self):
            self.now += timedelta(days=1)
            scheduler.scheduler_tick("machine", self.now, POLICY)
            if self.token and self.expires_at <= self.now and self.state != "needs_reconnect":
                self.state = "needs_reconnect"
                self.expired = True

        @rule()
        def sixty_days_pass(self):
            self.now += timedelta(days=60)
            scheduler.scheduler_tick("machine", self.now, POLICY)
            if self.token and self.expires_at <= self.now and self.state != "needs_reconnect":
                self.state = "needs_reconnect"
                self.expired = True

        # --- the promise ---------------------------------------------------------------------
        @invariant()
        def card_tells_the_truth(self):
            body = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
            badge = re.search(r'<span class="state-badge state-(\w+)"[^>]*>.*?</span>\s*(.*?)</span>', body, re.S)
            shown_state, shown_words = badge.group(1), badge.group(2).strip()
            assert shown_state == self.state, (shown_state, self.state)
            expected = EXPIRED_LABEL if self.expired and self.state == "needs_reconnect" else STATE_LABELS[self.state]
            assert shown_words == expected[0]

    run_state_machine_as_test(
        HealthPage,
        settings=settings(
            max_examples=30,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
