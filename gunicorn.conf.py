"""gunicorn settings, read from the environment the platform provides."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
# Heroku's router gives up after 30 s; a request still running past that is lost anyway.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 25
keepalive = 5
accesslog = "-"
errorlog = "-"
# Heroku terminates TLS and adds X-Forwarded-*; the app's ProxyFix trusts PROXY_FIX_HOPS hops of it
# (1 in production). With no proxy in front (0 hops), gunicorn must not believe those headers either.
_production = (os.environ.get("APP_ENV") or os.environ.get("FLASK_ENV")) == "production"
_proxy_hops = int(os.environ.get("PROXY_FIX_HOPS") or (1 if _production else 0))
forwarded_allow_ips = "*" if _proxy_hops > 0 else "127.0.0.1,::1"
preload_app = True
