"""Facebook Login for Business through Authlib: the dialog's redirect, its state and the code exchange.

The same registry and the same expiring session state as Instagram Login (webapp/instagram/oauth.py);
what differs is the dialog's parameters and the client that exchanges the code.
"""

from __future__ import annotations

from collections.abc import Mapping

from authlib.integrations.flask_client import FlaskOAuth2App
from flask import Flask, current_app

from webapp.instagram.oauth import REGISTRY, login_registry, public_callback_url, take_state
from webapp.services.meta.client import TokenGrant
from webapp.services.runtime import facebook_client


class FacebookLoginApp(FlaskOAuth2App):
    """Authlib handles the redirect, state and callback checks; our Facebook client makes the code exchange."""

    def fetch_access_token(self, redirect_uri=None, code=None, **kwargs) -> dict:
        # Authlib expects a mapping back; the typed grant travels inside it.
        return {"facebook_grant": facebook_client().exchange_code(code or "", redirect_uri or "")}


def grant_from(token: dict) -> TokenGrant:
    return token["facebook_grant"]


def init_facebook_login(app: Flask) -> None:
    """Register Facebook Login for Business with this app (beside Instagram Login, in the same registry)."""
    login_registry(app).register(
        "facebook",
        client_cls=FacebookLoginApp,
        client_id=app.config["FACEBOOK_APP_ID"],
        client_secret=app.config["FACEBOOK_APP_SECRET"],
        authorize_url=app.config["FACEBOOK_AUTHORIZE_URL"],
        access_token_url=(
            f"{app.config['FACEBOOK_GRAPH_BASE']}/{app.config['FACEBOOK_GRAPH_VERSION']}/oauth/access_token"
        ),
    )


def facebook_login() -> FacebookLoginApp:
    return current_app.extensions[REGISTRY].create_client("facebook")


def authorize_params(config: Mapping, *, renew: bool = False) -> dict[str, str]:
    """What the dialog is asked for: a saved Login configuration, or else the scopes; renewing asks again.

    Facebook Login for Business takes a `config_id` (the permissions and asset types saved in the
    app's dashboard) instead of `scope`; `auth_type=reauthorize` makes Facebook ask the person again
    even though the app is already authorised, which renews the 90-day data access window.
    """
    params = {"config_id": config["FACEBOOK_LOGIN_CONFIG_ID"]} if config.get("FACEBOOK_LOGIN_CONFIG_ID") else {}
    if not params:
        params["scope"] = config["FACEBOOK_SCOPES"]
    if renew:
        params["auth_type"] = "reauthorize"
    return params


def start_login(*, renew: bool = False):
    """The redirect to Facebook's login dialog, with a fresh state in this browser's session."""
    return facebook_login().authorize_redirect(callback_url(), **authorize_params(current_app.config, renew=renew))


def take_reply_state(state: str | None) -> bool:
    return take_state(facebook_login(), state)


def callback_url() -> str:
    return public_callback_url("facebook.callback")
