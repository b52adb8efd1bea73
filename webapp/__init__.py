"""Application factory: `create_app()` reads as a table of contents."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from flask import Flask, g
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp import (
    cli,
    clock,
    errors,
    models,  # noqa: F401  (models must be imported before migrations inspect them)
    request_input,
    templating,
)
from webapp.admin.api_keys import bp as api_keys_bp
from webapp.admin.routes import bp as admin_bp
from webapp.admin.webhooks import bp as webhooks_admin_bp
from webapp.api import init_api
from webapp.auth.routes import bp as auth_bp
from webapp.auth.sessions import enforce_session_limits
from webapp.config import PROJECT_ROOT, check_lease, engine_options, load_config
from webapp.dashboard.routes import bp as dashboard_bp
from webapp.extensions import csrf, db, limiter, login_manager, migrate
from webapp.facebook.oauth import init_facebook_login
from webapp.facebook.routes import bp as facebook_bp
from webapp.health import bp as health_bp
from webapp.instagram.oauth import init_instagram_login
from webapp.instagram.routes import bp as instagram_bp
from webapp.logging_filters import install_redaction
from webapp.meta_requests.routes import bp as meta_requests_bp
from webapp.notifications.routes import bp as notifications_bp
from webapp.sandbox import models as sandbox_models  # noqa: F401  (and the sandbox's tables)
from webapp.sandbox.facebook_routes import bp as sandbox_facebook_bp
from webapp.sandbox.routes import bp as sandbox_bp
from webapp.security import apply_security_headers, content_security_policy, refuse_nul_bytes
from webapp.services.runtime import init_runtime
from webapp.support import hooks as impersonation_hooks
from webapp.support.routes import bp as support_bp


def create_app(config: Mapping | None = None) -> Flask:
    """Create the dashboard app; `config` (tests) overrides what the environment says."""
    # templates/ and static/ sit at the top of the repository, beside webapp/, as the brief lays out.
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        instance_path=str(PROJECT_ROOT / "instance"),
    )
    app.config.update(load_config(instance_path=app.instance_path))
    if config:
        app.config.update(config)
        if "SQLALCHEMY_DATABASE_URI" in config and "SQLALCHEMY_ENGINE_OPTIONS" not in config:
            # Engine options follow the database actually used, not the one the environment names.
            app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(config["SQLALCHEMY_DATABASE_URI"], os.environ)
    check_lease(app.config)
    os.makedirs(app.instance_path, exist_ok=True)

    configure_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_request_hooks(app)
    register_template_helpers(app)
    register_commands(app)
    return app


def configure_logging(app: Flask) -> None:
    """Log to stdout (the platform collects it) at the configured LOG_LEVEL."""
    root = logging.getLogger()
    if not any(getattr(handler, "_dashboard", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._dashboard = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(app.config["LOG_LEVEL"])
    install_redaction()


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    init_runtime(app)
    init_instagram_login(app)
    init_facebook_login(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = None  # sessions are tracked server-side in login_sessions
    hops = app.config["PROXY_FIX_HOPS"]
    if hops:
        # Only the last `hops` entries come from proxies we run behind; anything before them is the
        # client's own text. With no proxy (hops 0) X-Forwarded-* is ignored entirely. Heroku's router
        # sets For, Proto and Port but never Host, so a Forwarded-Host could only be the client's.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=hops
        )
    app.extensions["csp"] = content_security_policy(app)


def register_blueprints(app: Flask) -> None:
    request_input.register(app)  # before any route: `<int:...>` then refuses ids no database column holds
    app.register_blueprint(health_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(instagram_bp)
    app.register_blueprint(facebook_bp)
    app.register_blueprint(meta_requests_bp)
    app.register_blueprint(support_bp)
    app.register_blueprint(notifications_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(webhooks_admin_bp)
    app.register_blueprint(api_keys_bp)
    init_api(app)  # /api/v1/: the Platform API and its OpenAPI document
    if app.config["INSTAGRAM_SANDBOX"]:
        # Never in production: load_config refuses INSTAGRAM_SANDBOX there.
        app.register_blueprint(sandbox_bp)
        app.register_blueprint(sandbox_facebook_bp)


def register_errorhandlers(app: Flask) -> None:
    errors.register(app)


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def stamp_request_time() -> None:
        g.now = clock.now()

    app.before_request(refuse_nul_bytes)
    app.before_request(enforce_session_limits)
    app.after_request(apply_security_headers)
    impersonation_hooks.register(app)


def register_template_helpers(app: Flask) -> None:
    templating.register(app)


def register_commands(app: Flask) -> None:
    cli.register(app)
