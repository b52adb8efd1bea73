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
# Heroku terminates TLS and adds X-Forwarded-*; the app's ProxyFix trusts exactly one hop of it.
forwarded_allow_ips = "*"
preload_app = True
