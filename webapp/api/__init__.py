"""The Platform API under /api/v1/: flask-smorest builds its OpenAPI 3.1 document from the views' schemas."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from marshmallow import fields

from webapp.api.problems import PROBLEM_CONTENT_TYPE

API_CONFIG = {
    "API_TITLE": "Shop Instagram Health: Platform API",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.1.0",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    "API_SPEC_OPTIONS": {
        "info": {
            "description": (
                "For the shop platform's own services: read a shop's Instagram connection and its "
                "kept-alive access token, and report the Meta errors you meet while using it. "
                "Authenticate with `Authorization: Bearer <api key>`; errors are "
                '`application/problem+json` (RFC 9457). README, section "Platform API", has examples.'
            )
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key (ihk_...)"}
            }
        },
    },
}


class PlatformApi(Api):
    """flask-smorest's Api, answering errors with the app's own handlers (problem documents under /api/)."""

    def _register_error_handlers(self) -> None:
        # flask-smorest would take over every HTTPException of the whole app, pages included;
        # webapp/errors.py already answers API requests with problem documents.
        return None

    def _register_responses(self) -> None:
        """Document each error status as a problem document (the components the views refer to)."""
        from http import HTTPStatus

        from webapp.api.schemas import ProblemSchema

        for status in HTTPStatus:
            if status < 400:
                continue
            response = {"description": status.phrase, "schema": ProblemSchema}
            prepare_response(response, self.spec, PROBLEM_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Any other error, as a problem document", "schema": ProblemSchema}
        prepare_response(default, self.spec, PROBLEM_CONTENT_TYPE)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)


def init_api(app: Flask) -> None:
    """Mount /api/v1/ and its OpenAPI document at /api/v1/openapi.json."""
    from webapp.api import routes, webhooks

    for name, value in API_CONFIG.items():
        app.config.setdefault(name, value)
    api = PlatformApi(app)
    api.register_field(fields.Url, "string", "uri")  # JSON Schema's name for it ("url" is no format there)
    api.register_blueprint(routes.bp)
    api.register_blueprint(webhooks.bp)
    app.extensions["platform_api"] = api
