"""The app's own Meta clients (Instagram and Facebook), token vault and keep-alive policy, built from its config once.

Views, the CLI and the login all reach them here, so none has to import another layer to get them.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests
from flask import Flask, current_app

from webapp.services.keepalive.policy import Policy
from webapp.services.meta.client import InstagramClient
from webapp.services.meta.facebook import FacebookClient
from webapp.services.token_vault import TokenVault, development_key, parse_keys


def init_runtime(app: Flask) -> None:
    """Build this app's token vault and Meta clients from its config."""
    keys = parse_keys(app.config.get("TOKEN_ENCRYPTION_KEYS", ""))
    if not keys:
        # load_config already refused production without keys; this is a local run.
        keys = [development_key(app.instance_path)]
    app.extensions["token_vault"] = TokenVault(keys)
    app.extensions["instagram_client"] = build_instagram_client(app.config)
    app.extensions["facebook_client"] = build_facebook_client(app.config)


def build_instagram_client(config: Mapping, session: requests.Session | None = None) -> InstagramClient:
    """An Instagram client for the app's Meta settings (the worker passes a session sized to its pool)."""
    return InstagramClient(
        client_id=config["INSTAGRAM_CLIENT_ID"],
        client_secret=config["INSTAGRAM_CLIENT_SECRET"],
        api_base=config["INSTAGRAM_API_BASE"],
        graph_base=config["INSTAGRAM_GRAPH_BASE"],
        graph_version=config["INSTAGRAM_GRAPH_VERSION"],
        timeout=config["INSTAGRAM_HTTP_TIMEOUT"],
        session=session,
    )


def build_facebook_client(config: Mapping, session: requests.Session | None = None) -> FacebookClient:
    """A Facebook Login client for the app's Meta settings; calls share the Instagram client's deadline."""
    return FacebookClient(
        app_id=config["FACEBOOK_APP_ID"],
        app_secret=config["FACEBOOK_APP_SECRET"],
        graph_base=config["FACEBOOK_GRAPH_BASE"],
        graph_version=config["FACEBOOK_GRAPH_VERSION"],
        timeout=config["INSTAGRAM_HTTP_TIMEOUT"],
        session=session,
    )


def instagram_client() -> InstagramClient:
    return current_app.extensions["instagram_client"]


def facebook_client() -> FacebookClient:
    return current_app.extensions["facebook_client"]


def token_vault() -> TokenVault:
    return current_app.extensions["token_vault"]


def keep_alive_policy() -> Policy:
    return Policy.from_config(current_app.config)
