"""Configuration read from the environment (12-factor), with safe local defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.pool import NullPool

from webapp.services.notify.smtp import MailConfigError, parse_mail_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; start-up must stop."""


def normalise_database_url(url: str) -> str:
    """Rewrite Heroku's `postgres://` to the psycopg 3 dialect SQLAlchemy needs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_options(database_uri: str, env: Mapping[str, str]) -> dict:
    options: dict = {"pool_pre_ping": True}
    if database_uri.startswith("sqlite"):
        # A fresh connection per use: a pooled one would stay bound to whatever file was at the path
        # when it opened (an empty one SQLite created while the real file was away) after the file is
        # back. Opening an SQLite file costs well under a millisecond.
        options["poolclass"] = NullPool
    if database_uri.startswith("postgresql"):
        # Named connections make pg_stat_activity readable (which process holds what).
        options["connect_args"] = {"application_name": env.get("DB_APPLICATION_NAME", "shop-instagram-health")}
        # Every worker thread and gunicorn thread holds a connection while it writes; a pool smaller
        # than that churns connections (a new TCP + auth round trip each time).
        concurrency = _int(env, "WORKER_CONCURRENCY", 8)
        options["pool_size"] = _int(env, "DB_POOL_SIZE", max(10, concurrency + 2))
        options["max_overflow"] = 10
    return options


def _flag(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from exc


def _minutes(env: Mapping[str, str], name: str, default: int) -> int:
    minutes = _int(env, name, default)
    if minutes < 0:
        raise ConfigError(f"{name} must be 0 or more minutes, got {minutes}.")
    return minutes


def load_config(env: dict | None = None, instance_path: str | None = None) -> dict:
    """Build the Flask config mapping from environment variables."""
    env = dict(os.environ if env is None else env)
    environment = env.get("APP_ENV") or env.get("FLASK_ENV") or "development"
    production = environment == "production"
    instance_dir = Path(instance_path or PROJECT_ROOT / "instance")

    secret_key = env.get("SECRET_KEY")
    database_url = env.get("DATABASE_URL")
    if production:
        check_production(env)
    if not secret_key:
        # Development only: a fixed key keeps sessions across restarts; never used in production.
        secret_key = "dev-only-not-secret"  # noqa: S105
    if not database_url:
        database_url = f"sqlite:///{instance_dir / 'dashboard.sqlite3'}"

    instagram_client_id = env.get("INSTAGRAM_CLIENT_ID", "")
    instagram_client_secret = env.get("INSTAGRAM_CLIENT_SECRET", "")
    has_credentials = bool(instagram_client_id and instagram_client_secret)
    facebook_app_id = env.get("FACEBOOK_APP_ID", "")
    facebook_app_secret = env.get("FACEBOOK_APP_SECRET", "")
    has_facebook_credentials = bool(facebook_app_id and facebook_app_secret)
    # The sandbox plays both of Meta's apps; real credentials for either mean real Meta is wanted.
    sandbox_default = not has_credentials and not has_facebook_credentials and not production
    sandbox = _flag(env.get("INSTAGRAM_SANDBOX"), sandbox_default)
    if production and sandbox:
        raise ConfigError("Production start refused: INSTAGRAM_SANDBOX cannot be on in production.")
    if sandbox and not has_credentials:
        instagram_client_id = "sandbox-app-id"
        instagram_client_secret = "sandbox-app-secret"  # noqa: S105
    if sandbox and not has_facebook_credentials:
        facebook_app_id, facebook_app_secret = SANDBOX_FACEBOOK_APP_ID, SANDBOX_FACEBOOK_APP_SECRET
    paths = login_paths(env, sandbox)
    # One local origin for every process of a local run. Not derived from PORT: honcho gives each
    # process its own PORT (the worker 5100), and the worker's mails must link to the web's port.
    local_base = env.get("LOCAL_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    # The sandbox speaks Meta's HTTP from this same server, so by default every Meta URL points at it.
    sandbox_base = env.get("SANDBOX_BASE_URL", f"{local_base}/sandbox").rstrip("/")
    facebook_version = graph_version(env, "FACEBOOK_GRAPH_VERSION")
    meta_defaults = {
        "INSTAGRAM_AUTHORIZE_URL": "https://www.instagram.com/oauth/authorize",
        "INSTAGRAM_API_BASE": "https://api.instagram.com",
        "INSTAGRAM_GRAPH_BASE": "https://graph.instagram.com",
        # Facebook Login's dialog is versioned; the Graph calls add the version themselves.
        "FACEBOOK_AUTHORIZE_URL": f"https://www.facebook.com/{facebook_version}/dialog/oauth",
        "FACEBOOK_GRAPH_BASE": "https://graph.facebook.com",
    }
    if sandbox:
        meta_defaults = {
            "INSTAGRAM_AUTHORIZE_URL": f"{sandbox_base}/oauth/authorize",
            "INSTAGRAM_API_BASE": sandbox_base,
            "INSTAGRAM_GRAPH_BASE": f"{sandbox_base}/graph",
            "FACEBOOK_AUTHORIZE_URL": f"{sandbox_base}/facebook/dialog/oauth",
            "FACEBOOK_GRAPH_BASE": f"{sandbox_base}/facebook/graph",
        }
    meta_urls = {name: env.get(name) or default for name, default in meta_defaults.items()}

    mail_url = env.get("MAIL_URL") or None
    if mail_url:
        try:
            parse_mail_url(mail_url, "x@example.com")
        except MailConfigError as exc:
            raise ConfigError(str(exc)) from exc
    return {
        "ENV_NAME": environment,
        "PRODUCTION": production,
        "LOG_LEVEL": log_level(env),
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(normalise_database_url(database_url), env),
        "REDIS_URL": env.get("REDIS_URL") or None,
        "MAIL_URL": env.get("MAIL_URL") or None,
        "TOKEN_ENCRYPTION_KEYS": env.get("TOKEN_ENCRYPTION_KEYS", ""),
        # Sessions: the cookie is signed; idle and absolute limits are enforced per request.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=_int(env, "SESSION_ABSOLUTE_HOURS", 12)),
        # Flask re-signs a permanent session's cookie on every response by default; the idle clock is
        # moved at most once a minute (security.session_expired), and the cookie goes out only then.
        "SESSION_REFRESH_EACH_REQUEST": False,
        "SESSION_IDLE_MINUTES": _int(env, "SESSION_IDLE_MINUTES", 60),
        "SESSION_ABSOLUTE_HOURS": _int(env, "SESSION_ABSOLUTE_HOURS", 12),
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "WTF_CSRF_TIME_LIMIT": None,  # the session's own timeouts bound the token's life
        "LOGIN_RATE_LIMIT": env.get("LOGIN_RATE_LIMIT", "5 per minute; 30 per hour"),
        "LOGIN_ACCOUNT_RATE_LIMIT": env.get("LOGIN_ACCOUNT_RATE_LIMIT", "10 per 15 minutes"),
        "RATELIMIT_STORAGE_URI": env.get("REDIS_URL") or "memory://",
        "RATELIMIT_HEADERS_ENABLED": True,
        # Proxies in front of the app whose X-Forwarded-* we believe: Heroku's router is exactly one;
        # a local run is reached directly, so there any X-Forwarded-For is the client's invention.
        "PROXY_FIX_HOPS": proxy_hops(env, production),
        # Production serves htmx from the CDN (local copy as fallback); local runs work offline.
        "HTMX_CDN": _flag(env.get("HTMX_CDN"), production),
        # Instagram (Meta). Base URLs are configurable so the sandbox and tests can stand in for Meta.
        "INSTAGRAM_CLIENT_ID": instagram_client_id,
        "INSTAGRAM_CLIENT_SECRET": instagram_client_secret,
        "INSTAGRAM_SANDBOX": sandbox,
        "INSTAGRAM_SCOPES": env.get("INSTAGRAM_SCOPES", "instagram_business_basic"),
        "INSTAGRAM_GRAPH_VERSION": graph_version(env),
        # Facebook Login for Business (the Page path). Its own app: its id and secret are not Instagram's.
        "LOGIN_PATHS": paths,
        "FACEBOOK_APP_ID": facebook_app_id,
        "FACEBOOK_APP_SECRET": facebook_app_secret,
        "FACEBOOK_LOGIN_CONFIG_ID": env.get("FACEBOOK_LOGIN_CONFIG_ID", "").strip() or None,
        "FACEBOOK_SCOPES": env.get("FACEBOOK_SCOPES", "").strip() or DEFAULT_FACEBOOK_SCOPES,
        "FACEBOOK_GRAPH_VERSION": facebook_version,
        **meta_urls,
        "SANDBOX_BASE_URL": sandbox_base,
        "INSTAGRAM_HTTP_TIMEOUT": float(env.get("INSTAGRAM_HTTP_TIMEOUT", "10")),
        "INSTAGRAM_STATE_MINUTES": _int(env, "INSTAGRAM_STATE_MINUTES", 10),
        # Keep-alive policy (DESIGN.md, "Token lifecycle policy"); every number is a config value.
        "REFRESH_AFTER_HOURS": _int(env, "REFRESH_AFTER_HOURS", 7 * 24),
        "CHECK_INTERVAL_MINUTES": _int(env, "CHECK_INTERVAL_MINUTES", 50),
        "FACEBOOK_CHECK_INTERVAL_MINUTES": _int(env, "FACEBOOK_CHECK_INTERVAL_MINUTES", 6 * 60),
        "SCHEDULE_JITTER": float(env.get("SCHEDULE_JITTER", "0.1")),
        "EXPIRY_WARNING_DAYS": _int(env, "EXPIRY_WARNING_DAYS", 10),
        "BACKOFF_BASE_SECONDS": _int(env, "BACKOFF_BASE_SECONDS", 120),
        "BACKOFF_MAX_SECONDS": _int(env, "BACKOFF_MAX_SECONDS", 6 * 3600),
        "RATE_LIMIT_SLOWDOWN_PERCENT": _int(env, "RATE_LIMIT_SLOWDOWN_PERCENT", 90),
        "WORKER_LEASE_SECONDS": _int(env, "WORKER_LEASE_SECONDS", 120),
        # Confirming calls that the Platform API's error reports make (README, "Platform API").
        "ERROR_REPORT_CONFIRM_SECONDS": _int(env, "ERROR_REPORT_CONFIRM_SECONDS", 60),
        "ERROR_REPORT_CONFIRMS_PER_DAY": _int(env, "ERROR_REPORT_CONFIRMS_PER_DAY", 10),
        "WORKER_CONCURRENCY": _int(env, "WORKER_CONCURRENCY", 8),
        "WORKER_BATCH_SIZE": _int(env, "WORKER_BATCH_SIZE", 50),
        "WORKER_POLL_SECONDS": float(env.get("WORKER_POLL_SECONDS", "5")),
        "OUTBOX_POLL_SECONDS": float(env.get("OUTBOX_POLL_SECONDS", "5")),
        "IMPERSONATION_MINUTES": _int(env, "IMPERSONATION_MINUTES", 30),
        "STATUS_POLL_SECONDS": _int(env, "STATUS_POLL_SECONDS", 30),
        "CHANGE_NOTICE_SECONDS": _int(env, "CHANGE_NOTICE_SECONDS", 120),
        "MANUAL_ACTION_RATE_LIMIT": env.get("MANUAL_ACTION_RATE_LIMIT", "6 per minute"),
        # Platform API: one budget per API key across every endpoint (README, "Platform API").
        "API_RATE_LIMIT": env.get("API_RATE_LIMIT", "600 per minute"),
        # The public origin Meta redirects back to, exactly as registered in the Meta app dashboard.
        "PUBLIC_BASE_URL": env.get("PUBLIC_BASE_URL", "").rstrip("/") or None,
        # Where links in mails point when PUBLIC_BASE_URL is not set (local runs).
        "LOCAL_BASE_URL": local_base,
        # werkzeug's default. Not read from the environment: only a test config may pass a cheaper one.
        "PASSWORD_HASH_METHOD": "scrypt",
        "MAIL_FROM": env.get("MAIL_FROM", "Shop Instagram Health <no-reply@shop-health.example>"),
        # Seconds for one whole SMTP conversation; a sender's claim on a mail is derived from it.
        "MAIL_SEND_TIMEOUT": float(env.get("MAIL_SEND_TIMEOUT", "15")),
        # Webhooks: one deadline per POST (a claim lasts 2 x (this + 5 s)), retried for so many hours, so many at once.
        "WEBHOOK_TIMEOUT": float(env.get("WEBHOOK_TIMEOUT", "10")),
        "WEBHOOK_RETRY_HOURS": _int(env, "WEBHOOK_RETRY_HOURS", 24),
        "WEBHOOK_CONCURRENCY": _int(env, "WEBHOOK_CONCURRENCY", 4),
        "RECONNECT_LINK_DAYS": _int(env, "RECONNECT_LINK_DAYS", 7),
        "REMINDER_DAYS": tuple(int(d) for d in env.get("REMINDER_DAYS", "2,5").split(",") if d.strip()),
        "EXPIRY_WARNING_NOTICE_DAYS": tuple(
            int(d) for d in env.get("EXPIRY_WARNING_NOTICE_DAYS", "10,3").split(",") if d.strip()
        ),
        # A connection that keeps breaking and coming back: "connected again" waits until it has held
        # this long, and breaks within this long of a "disconnected" notice wait for one summary.
        "NOTICE_QUIET_MINUTES": _minutes(env, "NOTICE_QUIET_MINUTES", 10),
        **_incident_thresholds(env),
    }


def _incident_thresholds(env: Mapping[str, str]) -> dict:
    """When a fleet incident opens and closes (services/incidents.py; README "Fleet incidents")."""
    values = {
        "INCIDENT_WINDOW_MINUTES": _int(env, "INCIDENT_WINDOW_MINUTES", 10),
        "INCIDENT_MIN_CONNECTIONS": _int(env, "INCIDENT_MIN_CONNECTIONS", 10),
        "INCIDENT_OPEN_PERCENT": _int(env, "INCIDENT_OPEN_PERCENT", 50),
        "INCIDENT_CLOSE_PERCENT": _int(env, "INCIDENT_CLOSE_PERCENT", 10),
        "INCIDENT_CLOSE_MINUTES": _int(env, "INCIDENT_CLOSE_MINUTES", 15),
    }
    if values["INCIDENT_WINDOW_MINUTES"] < 1 or values["INCIDENT_CLOSE_MINUTES"] < 0:
        raise ConfigError("INCIDENT_WINDOW_MINUTES must be 1 or more, INCIDENT_CLOSE_MINUTES 0 or more.")
    if values["INCIDENT_MIN_CONNECTIONS"] < 2:
        raise ConfigError("INCIDENT_MIN_CONNECTIONS must be 2 or more: one shop's trouble is never a fleet incident.")
    if not 0 <= values["INCIDENT_CLOSE_PERCENT"] < values["INCIDENT_OPEN_PERCENT"] <= 100:
        raise ConfigError(
            "INCIDENT_CLOSE_PERCENT must be below INCIDENT_OPEN_PERCENT, both between 0 and 100 "
            f"(got {values['INCIDENT_CLOSE_PERCENT']} and {values['INCIDENT_OPEN_PERCENT']})."
        )
    return values


# Every one of these must be set in production; README "Configuration" says why. The credentials of
# each login path in LOGIN_PATHS are required too (PATH_CREDENTIALS), in this list's place for them.
PRODUCTION_REQUIRED = (
    "SECRET_KEY",
    "DATABASE_URL",
    "TOKEN_ENCRYPTION_KEYS",
    "PUBLIC_BASE_URL",
    "REDIS_URL",
)
MIN_SECRET_KEY_LENGTH = 32
REFUSED = "Production start refused: "

# The login paths DESIGN.md names (LoginPath in models.py), each with the app credentials it needs.
PATH_CREDENTIALS = {
    "instagram": ("INSTAGRAM_CLIENT_ID", "INSTAGRAM_CLIENT_SECRET"),
    "facebook": ("FACEBOOK_APP_ID", "FACEBOOK_APP_SECRET"),
}
# The Facebook app the sandbox plays when no real one is configured (the sandbox checks calls against these).
SANDBOX_FACEBOOK_APP_ID = "sandbox-facebook-app-id"
SANDBOX_FACEBOOK_APP_SECRET = "sandbox-facebook-app-secret"  # noqa: S105 (a sandbox value, never a real secret)
DEFAULT_FACEBOOK_SCOPES = "instagram_basic,pages_show_list,pages_read_engagement,business_management"


def login_paths(env: Mapping[str, str], sandbox: bool) -> tuple[str, ...]:
    """LOGIN_PATHS as a tuple; outside the sandbox a listed path without its credentials stops start-up."""
    paths = enabled_paths(env, sandbox)
    if not sandbox and (env.get("LOGIN_PATHS") or "").strip():
        missing = missing_credentials(env, paths)
        if missing:
            one = len(missing) == 1
            raise ConfigError(
                f"LOGIN_PATHS offers {', '.join(paths)}, but {', '.join(missing)} {'is' if one else 'are'} not set: "
                f"set {'it' if one else 'them'}, or take that path out of LOGIN_PATHS."
            )
    return paths


def enabled_paths(env: Mapping[str, str], sandbox: bool) -> tuple[str, ...]:
    """The paths LOGIN_PATHS lists; by default those whose credentials are set (both in the sandbox).

    A path counts as configured when any of its credentials is set, so that a half-set pair is named
    as missing rather than the path quietly disappearing.
    """
    raw = (env.get("LOGIN_PATHS") or "").strip()
    if not raw:
        if sandbox:
            return tuple(PATH_CREDENTIALS)
        configured = [path for path, names in PATH_CREDENTIALS.items() if any(env.get(name) for name in names)]
        # Nothing set at all: Instagram Login, the path the product began with (production names its vars).
        return tuple(configured or ["instagram"])
    paths: list[str] = []
    for name in (part.strip().lower() for part in raw.split(",")):
        if name not in PATH_CREDENTIALS:
            raise ConfigError(f"LOGIN_PATHS must list instagram, facebook or both, comma-separated; got {raw!r}.")
        if name not in paths:
            paths.append(name)
    return tuple(paths)


def missing_credentials(env: Mapping[str, str], paths: tuple[str, ...]) -> list[str]:
    return [name for path in paths for name in PATH_CREDENTIALS[path] if not env.get(name)]


def check_production(env: dict) -> None:
    """Refuse a production start that lacks a required setting or has an unsafe one (one line each)."""
    credentials = missing_credentials(env, enabled_paths(env, sandbox=False))
    # The app's own settings first, then the login paths' credentials, then the services: README's order.
    missing = [name for name in PRODUCTION_REQUIRED[:3] if not env.get(name)]
    missing += credentials + [name for name in PRODUCTION_REQUIRED[3:] if not env.get(name)]
    if missing:
        raise ConfigError(f"{REFUSED}set {', '.join(missing)} as config vars (see README, 'Configuration').")
    if len(env["SECRET_KEY"]) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"{REFUSED}SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters; make one with "
            'python -c "import secrets; print(secrets.token_hex(32))".'
        )
    public = urlsplit(env["PUBLIC_BASE_URL"])
    if public.scheme != "https" or not public.hostname or public.query or public.fragment:
        raise ConfigError(
            f"{REFUSED}PUBLIC_BASE_URL must be this app's https origin, e.g. https://dashboard.example.com "
            "(mailed links and Meta's redirect URI are built from it)."
        )
    # Login throttling counts in REDIS_URL; an in-process count would be one per gunicorn process and
    # per dyno, and the app cannot know how many dynos run, so production always needs it.
    if urlsplit(env["REDIS_URL"]).scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"{REFUSED}REDIS_URL must be a redis:// or rediss:// URL (login throttling is shared through it)."
        )


REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")


def proxy_hops(env: dict, production: bool) -> int:
    """How many proxies' X-Forwarded-* to trust: PROXY_FIX_HOPS, else 1 in production and 0 locally."""
    hops = _int(env, "PROXY_FIX_HOPS", 1 if production else 0)
    if not 0 <= hops <= 5:
        raise ConfigError(f"PROXY_FIX_HOPS must be between 0 and 5 (proxies in front of the app), got {hops}.")
    return hops


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(env: Mapping[str, str]) -> str:
    """LOG_LEVEL, INFO when unset; a name logging does not know stops start-up."""
    level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}.")
    return level


DEFAULT_GRAPH_VERSION = "v23.0"
GRAPH_VERSION = re.compile(r"v\d{1,2}\.\d")


def graph_version(env: Mapping[str, str], name: str = "INSTAGRAM_GRAPH_VERSION") -> str:
    """The Graph API version in every versioned URL (`name`, one per app); a malformed one stops start-up."""
    version = (env.get(name) or DEFAULT_GRAPH_VERSION).strip()
    if not GRAPH_VERSION.fullmatch(version):
        # Otherwise every health check would call a path Meta does not serve, and fail as a request error.
        raise ConfigError(
            f"{name} must be a Graph API version such as {DEFAULT_GRAPH_VERSION} "
            f"(v, major, dot, minor), got {version!r}."
        )
    return version


# A lease must outlive the worst case of the work it covers: one call to Meta that runs to its
# timeout, plus the write-back with its retries (about 7 s), with room to spare (promise 4).
WRITE_BACK_RETRY_SECONDS = 7


# A Facebook Login check makes up to this many calls in one lease (keepalive/facebook_check.py
# PAGE_CHECK_CALLS: debug_token, two screens of the merchant's Pages, the Page); a test keeps them equal.
FACEBOOK_CHECK_CALLS = 4


def check_lease(config: dict) -> None:
    """Refuse to start when a worker's lease could run out while its calls to Meta are still going."""
    calls = FACEBOOK_CHECK_CALLS if "facebook" in config.get("LOGIN_PATHS", ()) else 1
    worst_case = calls * config["INSTAGRAM_HTTP_TIMEOUT"] + WRITE_BACK_RETRY_SECONDS
    if config["WORKER_LEASE_SECONDS"] < 2 * worst_case:
        what = (
            "INSTAGRAM_HTTP_TIMEOUT"
            if calls == 1
            else f"{calls} calls of INSTAGRAM_HTTP_TIMEOUT (a Facebook Login check)"
        )
        raise ConfigError(
            f"WORKER_LEASE_SECONDS ({config['WORKER_LEASE_SECONDS']}) must be at least twice the worst-case "
            f"work ({worst_case:g} s = {what} + write-back retries), i.e. {2 * worst_case:g} s."
        )
