"""Instagram Business Login through Authlib: the redirect, its state and the callback's code exchange.

The app's one Authlib registry lives here too; Facebook Login (webapp/facebook/oauth.py) registers
its own client in it, with the same expiring state.
"""

from __future__ import annotations

import time

from authlib.integrations.flask_client import FlaskIntegration, FlaskOAuth2App, OAuth
from flask import Flask, current_app, session, url_for

from webapp.services.meta.client import TokenGrant
from webapp.services.runtime import instagram_client


class ExpiringSessionState(FlaskIntegration):
    """Authlib's session-stored state, but refused once it is older than the configured lifetime.

    Authlib only sweeps expired state when a new one is cleared; we refuse it on read as well.
    """

    # Authlib declares a plain class attribute but only ever reads it (when it stores a new state);
    # a property lets the lifetime follow the app's config.
    @property
    def expires_in(self) -> int:  # type: ignore[override]
        return current_app.config["INSTAGRAM_STATE_MINUTES"] * 60

    def get_state_data(self, session, state):
        stored = session.get(f"_state_{self.name}_{state}")
        if not stored or stored.get("exp", 0) < time.time():
            return None
        return super().get_state_data(session, state)


class InstagramLoginApp(FlaskOAuth2App):
    """Authlib handles the redirect, state and callback checks; our client makes the code exchange.

    Instagram answers the exchange in two shapes and with its own error bodies, which the client
    already parses into typed results, so Authlib's generic token parsing is bypassed here.
    """

    def fetch_access_token(self, redirect_uri=None, code=None, **kwargs) -> dict:
        # Authlib expects a mapping back; the typed grant travels inside it.
        return {"instagram_grant": instagram_client().exchange_code(code or "", redirect_uri or "")}


def grant_from(token: dict) -> TokenGrant:
    return token["instagram_grant"]


class InstagramOAuth(OAuth):
    oauth2_client_cls = InstagramLoginApp
    framework_integration_cls = ExpiringSessionState


REGISTRY = "authlib.integrations.flask_client"


def login_registry(app: Flask) -> OAuth:
    """The app's Authlib registry, made on first use; both of Meta's logins register in it.

    Flask-Authlib keeps one registry per app (in app.extensions), so a second one would replace the first.
    """
    # One registry per app, never a shared cache: Authlib caches clients per registry and tests
    # build many apps; state stays in the signed session (GHSA-fg6f-75jq-6523 concerned caches).
    registry = app.extensions.get(REGISTRY)
    return registry if registry is not None else InstagramOAuth(app)


def init_instagram_login(app: Flask) -> None:
    """Register Instagram Business Login with this app."""
    login_registry(app).register(
        "instagram",
        client_id=app.config["INSTAGRAM_CLIENT_ID"],
        client_secret=app.config["INSTAGRAM_CLIENT_SECRET"],
        authorize_url=app.config["INSTAGRAM_AUTHORIZE_URL"],
        access_token_url=f"{app.config['INSTAGRAM_API_BASE']}/oauth/access_token",
        client_kwargs={"scope": app.config["INSTAGRAM_SCOPES"]},
    )


def instagram_login() -> InstagramLoginApp:
    return current_app.extensions[REGISTRY].create_client("instagram")


def take_state(login: FlaskOAuth2App, state: str | None) -> bool:
    """True when `state` belongs to a login this browser started with `login` and has not used; it is used up now.

    Authlib checks it for replies with a code; a reply with an error carries no code, so the
    callback asks here before it records the refusal (a forged error link is not Meta's answer).
    """
    if not state:
        return False
    framework = login.framework
    ours = framework.get_state_data(session, state) is not None
    framework.clear_state_data(session, state)
    return ours


def take_reply_state(state: str | None) -> bool:
    return take_state(instagram_login(), state)


def public_callback_url(endpoint: str) -> str:
    """The redirect_uri of a login's callback, byte-identical at authorize and exchange time (promise 18).

    PUBLIC_BASE_URL wins when set; otherwise the request's own origin, which ProxyFix has already
    corrected to the https origin the platform's router received.
    """
    base = current_app.config.get("PUBLIC_BASE_URL")
    if base:
        return f"{base}{url_for(endpoint)}"
    scheme = "https" if current_app.config.get("PRODUCTION") else None
    return url_for(endpoint, _external=True, _scheme=scheme)


def callback_url() -> str:
    return public_callback_url("instagram.callback")
