"""WSGI entry point for gunicorn and the `flask --app wsgi` commands."""

from webapp import create_app

app = create_app()
