"""The Platform API's request and response bodies (marshmallow); the OpenAPI document is generated from them."""

from __future__ import annotations

from marshmallow import EXCLUDE, INCLUDE, Schema, fields, validate

from webapp.models import ConnectionState, LoginPath
from webapp.services.connections.causes import CauseId

STATES = [str(state) for state in ConnectionState]
CAUSES = [str(cause) for cause in CauseId]
LOGIN_PATHS = [str(path) for path in LoginPath]
CONFIDENCES = ["certain", "likely", "possible"]
INT32 = validate.Range(min=-(2**31), max=2**31 - 1)


# No field of ours needs a NUL, and PostgreSQL cannot store one; as a pattern, the document says so too.
NO_NUL = validate.Regexp(r"^[^\x00]*$", error="Must not contain NUL characters.")


class WholeNumber(fields.Integer):
    """An integer as JSON Schema counts them: 190 and 190.0 are the same number; 190.5, "190" and true are not."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """true or false (or null where allowed): not 1, "yes" or "on", which JSON Schema's boolean refuses too."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def text(max_length: int, **kwargs) -> fields.String:
    return fields.String(validate=[validate.Length(max=max_length), NO_NUL], **kwargs)


def _described(description: str, **kwargs) -> dict:
    return {"metadata": {"description": description}, **kwargs}


class ProblemSchema(Schema):
    """An RFC 9457 problem document; some types add members (`errors`, `required_scope`, `state`, `cause`)."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, **_described("`about:blank`, or /api/v1/problems/<slug> for our own"))
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)


class ProblemTypeSchema(Schema):
    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    description = fields.String(required=True)


class AccountSchema(Schema):
    username = fields.String(required=True, allow_none=True)
    instagram_user_id = fields.String(
        required=True, allow_none=True, **_described("The Instagram professional account's id")
    )
    facebook_page_id = fields.String(required=True, allow_none=True, **_described("Facebook Login only"))
    facebook_page_name = fields.String(required=True, allow_none=True, **_described("Facebook Login only"))


class RankedCauseSchema(Schema):
    cause = fields.String(required=True, validate=validate.OneOf(CAUSES))
    title = fields.String(required=True)
    confidence = fields.String(required=True, validate=validate.OneOf(CONFIDENCES))
    evidence = fields.List(fields.String(), required=True)
    checklist = fields.List(fields.String(), required=True)


class DiagnosisSchema(RankedCauseSchema):
    """The stored diagnosis of the connection's current trouble: its most likely cause first."""

    explanation = fields.String(required=True)
    incident_started_at = fields.DateTime(required=True, allow_none=True)
    diagnosed_at = fields.DateTime(required=True, allow_none=True)
    meta_user_title = fields.String(required=True, allow_none=True, **_described("Meta's own words, if it sent any"))
    meta_user_message = fields.String(required=True, allow_none=True)
    other_causes = fields.List(fields.Nested(RankedCauseSchema), required=True)


class ConnectionSchema(Schema):
    shop_id = fields.Integer(required=True)
    shop_name = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    cause = fields.String(required=True, allow_none=True, validate=validate.OneOf(CAUSES))
    state_changed_at = fields.DateTime(required=True, allow_none=True)
    login_path = fields.String(required=True, validate=validate.OneOf(LOGIN_PATHS))
    account = fields.Nested(AccountSchema, required=True)
    token_issued_at = fields.DateTime(required=True, allow_none=True)
    token_age_seconds = fields.Integer(required=True, allow_none=True)
    token_expires_at = fields.DateTime(
        required=True,
        allow_none=True,
        **_described("When the token stops working by date. Facebook Login: the end of the 90-day data-access window."),
    )
    expiry_kind = fields.String(
        required=True, allow_none=True, validate=validate.OneOf(["token", "data_access_window"])
    )
    last_checked_at = fields.DateTime(required=True, allow_none=True)
    last_check_ok = fields.Boolean(required=True, allow_none=True)
    last_refreshed_at = fields.DateTime(required=True, allow_none=True)


class ConnectionDetailSchema(ConnectionSchema):
    diagnosis = fields.Nested(DiagnosisSchema, required=True, allow_none=True)


class ConnectionListArgsSchema(Schema):
    # An unknown parameter is refused (422), so a misspelt filter (`stat=`) is not silently ignored.

    state = fields.String(validate=validate.OneOf(STATES))
    cause = fields.String(validate=validate.OneOf(CAUSES))
    cursor = text(200, **_described("`next_cursor` from the previous page"))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class ConnectionPageSchema(Schema):
    connections = fields.List(fields.Nested(ConnectionSchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, **_described("Pass it as `cursor` for the next page; null on the last page")
    )


class TokenSchema(Schema):
    shop_id = fields.Integer(required=True)
    access_token = fields.String(required=True)
    token_expires_at = fields.DateTime(required=True, allow_none=True)
    login_path = fields.String(required=True, validate=validate.OneOf(LOGIN_PATHS))
    token_fingerprint = fields.String(required=True, allow_none=True, **_described("A short one-way label"))
    state = fields.String(required=True, validate=validate.OneOf(STATES))


class ErrorReportSchema(Schema):
    """The fields of Meta's `error` object, as the platform's call got it, and the call's HTTP status."""

    class Meta:
        unknown = EXCLUDE  # Meta adds fields over time; what we do not read we do not refuse

    code = WholeNumber(allow_none=True, validate=INT32)
    error_subcode = WholeNumber(allow_none=True, validate=INT32)
    type = text(100, allow_none=True)
    message = text(2000, allow_none=True)
    error_user_title = text(255, allow_none=True)
    error_user_msg = text(1000, allow_none=True)
    fbtrace_id = text(100, allow_none=True)
    is_transient = StrictBoolean(allow_none=True)
    http_status = WholeNumber(allow_none=True, validate=validate.Range(min=100, max=599))


class ClassificationSchema(Schema):
    cause = fields.String(required=True, validate=validate.OneOf(CAUSES))
    title = fields.String(required=True)
    needs_reconnect = fields.Boolean(required=True)
    retryable = fields.Boolean(required=True)


class ConnectionStateSchema(Schema):
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    cause = fields.String(required=True, allow_none=True, validate=validate.OneOf(CAUSES))


class ErrorReportResultSchema(Schema):
    shop_id = fields.Integer(required=True)
    classification = fields.Nested(ClassificationSchema, required=True)
    action = fields.String(
        required=True,
        validate=validate.OneOf(["confirmed_disconnected", "not_confirmed", "recorded_transient", "ignored"]),
    )
    detail = fields.String(required=True)
    connection = fields.Nested(ConnectionStateSchema, required=True)


class WebhookEndpointSchema(Schema):
    id = fields.Integer(required=True)
    url = fields.String(required=True)
    description = fields.String(required=True)
    event_types = fields.List(fields.String(), required=True)
    created_at = fields.DateTime(required=True)
    disabled_at = fields.DateTime(required=True, allow_none=True)


class NewWebhookEndpointSchema(WebhookEndpointSchema):
    secret = fields.String(required=True, **_described("The signing secret (whsec_...), shown this once"))


class WebhookEndpointListSchema(Schema):
    endpoints = fields.List(fields.Nested(WebhookEndpointSchema), required=True)
