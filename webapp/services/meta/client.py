"""A small client for Instagram's OAuth and Graph endpoints (Instagram API with Instagram Login).

No Flask imports: the web app, the worker and the sandbox tests all use it the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests

from webapp.logging_filters import redact, remove_secrets
from webapp.services.meta import bounded_json
from webapp.services.meta.http_deadline import deadline_session

# /me asks for what Meta documents. `user_id` and `username` come from Instagram Login's "Get started"
# (the professional account's id and name); the rest are optional: `id` (the app-scoped id), `name`
# and `profile_picture_url` from the IG User reference, and `account_type`, which Meta documents only
# for the retired Basic Display API. Should Meta refuse an optional field, /me is asked again with
# the required ones only, and this client stops asking for the refused field (InstagramClient.me).
PROFILE_REQUIRED_FIELDS = ("user_id", "username")
PROFILE_OPTIONAL_FIELDS = ("id", "name", "profile_picture_url", "account_type")
PROFILE_FIELDS = ",".join(PROFILE_REQUIRED_FIELDS + PROFILE_OPTIONAL_FIELDS)
# Graph's refusal of a field: "(#100) Tried accessing nonexisting field (account_type) on node type (User)".
NONEXISTING_FIELD = re.compile(r"nonexisting field(?:s)?\s*\(([^)]*)\)", re.IGNORECASE)
# account_type's documented values (Basic Display's User reference) are BUSINESS, MEDIA_CREATOR and
# PERSONAL. Only PERSONAL says "not professional"; a value Meta never documented disconnects nobody.
PERSONAL_ACCOUNT_TYPE = "PERSONAL"
# Meta's rule: a long-lived token lasts 60 days from its issue or its last refresh.
LONG_LIVED_TOKEN_LIFETIME = timedelta(days=60)
SECRET_PARAMETERS = frozenset(
    {"access_token", "client_secret", "code", "fb_exchange_token", "input_token", "appsecret_proof"}
)


@dataclass(frozen=True)
class Usage:
    """Meta's usage headers: percentages of the quota used, and how long until access returns."""

    app: dict = field(default_factory=dict)
    business: dict = field(default_factory=dict)

    @property
    def highest_percent(self) -> int:
        values = [
            v for k, v in self.app.items() if isinstance(v, int | float) and k != "estimated_time_to_regain_access"
        ]
        for entries in self.business.values():
            for entry in entries if isinstance(entries, list) else []:
                values += [
                    v
                    for k, v in entry.items()
                    if k in ("call_count", "total_cputime", "total_time") and isinstance(v, int | float)
                ]
        return int(max(values, default=0))

    @property
    def regain_access_minutes(self) -> int:
        minutes = [
            entry.get("estimated_time_to_regain_access", 0)
            for entries in self.business.values()
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict)
        ]
        return int(max([m for m in minutes if isinstance(m, int | float)], default=0))


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    user_id: str | None = None
    permissions: tuple[str, ...] = ()
    expires_in: int | None = None
    token_type: str | None = None
    # The usage headers of the answer that granted it (not part of the grant's identity).
    usage: Usage = field(default_factory=Usage, compare=False)

    def expires_at(self, now: datetime) -> datetime | None:
        return now + timedelta(seconds=self.expires_in) if self.expires_in else None


@dataclass(frozen=True)
class Profile:
    """What /me says about the token's account.

    `user_id` is /me's `user_id`, the Instagram professional account's id (the id webhooks carry as
    `entry.id`); `scoped_id` is /me's `id`, the app-scoped id. Meta documents them as different numbers.
    """

    user_id: str
    username: str | None = None
    name: str | None = None
    profile_picture_url: str | None = None
    account_type: str | None = None
    scoped_id: str | None = None
    # The usage headers of the answer it came in (not part of the profile's identity).
    usage: Usage = field(default_factory=Usage, compare=False)

    @property
    def is_personal(self) -> bool:
        """Meta says the account is a personal one; an absent or undocumented account_type says nothing."""
        return (self.account_type or "").upper() == PERSONAL_ACCOUNT_TYPE


class MetaApiError(Exception):
    """Any failed call to Meta: an error body, a bad status, a timeout, a broken connection, bad JSON."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        error_type: str | None = None,
        fbtrace_id: str | None = None,
        is_transient: bool | None = None,
        failure: str = "error_response",
        usage: Usage | None = None,
        user_title: str | None = None,
        user_message: str | None = None,
    ):
        super().__init__(redact(message))
        self.message = redact(message)
        # Meta's own words for the account owner (error_user_title, error_user_msg), shown to the merchant.
        self.user_title = redact(user_title) if user_title else None
        self.user_message = redact(user_message) if user_message else None
        self.http_status = http_status
        self.code = code
        self.subcode = subcode
        self.type = error_type
        # Meta's trace id is never a secret, but a caller reporting an error may fill it with anything.
        self.fbtrace_id = redact(fbtrace_id) if fbtrace_id else None
        self.is_transient = is_transient
        # error_response | timeout | connection | malformed
        self.failure = failure
        self.usage = usage or Usage()

    def without(self, secrets: list[str]) -> MetaApiError:
        """Remove every secret the call sent from the texts, in case Meta (or a caller) quoted one (promise 34)."""
        self.message = remove_secrets(self.message, secrets)
        if self.user_title:
            self.user_title = remove_secrets(self.user_title, secrets)
        if self.user_message:
            self.user_message = remove_secrets(self.user_message, secrets)
        if self.fbtrace_id:
            self.fbtrace_id = remove_secrets(self.fbtrace_id, secrets)
        self.args = (self.message,)
        return self

    def __repr__(self) -> str:
        return (
            f"MetaApiError(http_status={self.http_status}, code={self.code}, subcode={self.subcode}, "
            f"type={self.type!r}, failure={self.failure!r}, message={self.message!r})"
        )

    def as_dict(self) -> dict:
        return {"code": self.code, "subcode": self.subcode, "type": self.type, "message": self.message}


class AccountNotProfessional(MetaApiError):
    """/me answered, but for a personal account: the Instagram API serves only professional accounts.

    Meta itself refuses such an account with "(#10) The user is not an Instagram Business"; this is the
    same fact read from account_type, and the classifier names both `account_not_professional`.
    """

    def __init__(self, account_type: str, *, usage: Usage | None = None):
        super().__init__(
            f"Instagram reports the account type {account_type}: not a professional account (Business or Creator).",
            usage=usage,
        )
        self.account_type = account_type


def refused_fields(error: MetaApiError) -> set[str] | None:
    """The fields a Graph error says do not exist (an empty set when it names none), or None for other errors."""
    if error.code != 100:
        return None
    match = NONEXISTING_FIELD.search(error.message)
    if match is None:
        return None
    return {name.strip() for name in match.group(1).split(",") if name.strip()}


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError, OverflowError):
        return None


def _text_or_none(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_error_body(body: object, http_status: int | None = None, usage: Usage | None = None) -> MetaApiError | None:
    """Turn any of Meta's error shapes into a MetaApiError, or None when `body` is not an error."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("error"), dict):  # Graph: {"error": {...}}
        error = body["error"]
        error_data = error.get("error_data")
        if isinstance(error_data, str):  # sometimes a JSON-encoded string
            try:
                error_data = bounded_json.loads(error_data)
            except ValueError:
                error_data = {}
        subcode = error.get("error_subcode")
        if subcode is None and isinstance(error_data, dict):
            subcode = error_data.get("error_subcode")
        return MetaApiError(
            str(error.get("message") or error.get("error_user_msg") or "Meta returned an error"),
            http_status=http_status,
            code=_int_or_none(error.get("code")),
            subcode=_int_or_none(subcode),
            error_type=error.get("type"),
            fbtrace_id=error.get("fbtrace_id"),
            is_transient=error.get("is_transient"),
            usage=usage,
            user_title=_text_or_none(error.get("error_user_title")),
            user_message=_text_or_none(error.get("error_user_msg")),
        )
    legacy = body.get("meta")
    if isinstance(legacy, dict) and "error_type" in legacy:  # legacy Instagram v1
        body = legacy
    if "error_type" in body or "error_message" in body:  # OAuth endpoints: flat shape
        return MetaApiError(
            str(body.get("error_message") or "Meta returned an error"),
            http_status=http_status,
            code=_int_or_none(body.get("code")),
            error_type=body.get("error_type"),
            usage=usage,
        )
    if isinstance(body.get("error"), str):  # OAuth 2 style {"error": "...", "error_description": "..."}
        return MetaApiError(
            str(body.get("error_description") or body["error"]), http_status=http_status, error_type=body["error"]
        )
    if body.get("status") == "fail" and "message" in body:
        return MetaApiError(str(body["message"]), http_status=http_status, usage=usage)
    return None


def parse_usage(headers) -> Usage:
    def load(name: str) -> dict:
        raw = headers.get(name)
        if not raw:
            return {}
        try:
            value = bounded_json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    return Usage(app=load("X-App-Usage"), business=load("X-Business-Use-Case-Usage"))


def parse_grant(body: dict, usage: Usage) -> TokenGrant:
    """The token in a token endpoint's answer (any of Meta's apps); malformed without an access_token."""
    token = body.get("access_token")
    if not token or not isinstance(token, str):
        raise MetaApiError("token response has no access_token", failure="malformed")
    permissions = body.get("permissions") or ()
    if isinstance(permissions, str):
        permissions = tuple(p.strip() for p in permissions.split(",") if p.strip())
    user_id = body.get("user_id")
    return TokenGrant(
        access_token=token,
        user_id=str(user_id) if user_id is not None else None,
        permissions=tuple(permissions),
        expires_in=_int_or_none(body.get("expires_in")),
        token_type=body.get("token_type"),
        usage=usage,
    )


class MetaHttp:
    """One call to Meta: one overall deadline, its JSON object or a MetaApiError that quotes no secret sent.

    Each of Meta's apps gets a client of its own on top of this (InstagramClient, FacebookClient).
    """

    session: requests.Session
    timeout: float

    def _call(self, method: str, url: str, secrets: tuple[str, ...] = (), **kwargs) -> tuple[dict, Usage]:
        """The JSON object Meta answered, with the usage headers that came with it.

        `secrets` are kept out of any error text besides the secret parameters the call sends.
        """
        sent = [*secrets] + [
            str(value)
            for part in ("params", "data")
            for name, value in (kwargs.get(part) or {}).items()
            if name in SECRET_PARAMETERS
        ]
        try:
            return self._exchange(method, url, sent, **kwargs)
        except MetaApiError as error:
            # Only here is it known what was sent: Meta may quote the token back in its error text.
            raise error.without(sent) from None

    def _exchange(self, method: str, url: str, sent: list[str], **kwargs) -> tuple[dict, Usage]:
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise MetaApiError(f"Meta did not answer within {self.timeout:g} s", failure="timeout") from None
        except requests.RequestException as exc:
            # The exception text would carry the URL, token included; keep only its kind.
            raise MetaApiError(f"could not reach Meta ({type(exc).__name__})", failure="connection") from None
        usage = parse_usage(response.headers)
        try:
            body = bounded_json.loads(response.content)
        except ValueError:
            # Secrets come out before the cut, so no half of a token survives at the edge.
            snippet = remove_secrets(response.text, sent)[:200]
            if response.ok:
                raise MetaApiError(
                    f"Meta sent a body that is not JSON: {snippet!r}",
                    http_status=response.status_code,
                    failure="malformed",
                    usage=usage,
                ) from None
            raise MetaApiError(
                f"HTTP {response.status_code} from Meta: {snippet!r}",
                http_status=response.status_code,
                failure="malformed",
                usage=usage,
            ) from None
        error = parse_error_body(body, response.status_code, usage)
        if error is not None:
            raise error
        if not response.ok:
            raise MetaApiError(f"HTTP {response.status_code} from Meta", http_status=response.status_code, usage=usage)
        if not isinstance(body, dict):
            raise MetaApiError(
                "Meta sent JSON that is not an object",
                http_status=response.status_code,
                failure="malformed",
                usage=usage,
            )
        return body, usage


class InstagramClient(MetaHttp):
    """Calls Instagram's endpoints with a timeout on every request and typed errors on every failure."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        api_base: str = "https://api.instagram.com",
        graph_base: str = "https://graph.instagram.com",
        graph_version: str = "v23.0",
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ):
        """`timeout` is the overall deadline of one call: connect, headers and body together."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_base = api_base.rstrip("/")
        self.graph_base = graph_base.rstrip("/")
        self.graph_version = graph_version
        self.timeout = timeout
        self.session = session or deadline_session(timeout)
        # Optional /me fields Meta refused for this app; replaced whole, so threads never see half a set.
        self.refused_profile_fields: frozenset[str] = frozenset()

    def exchange_code(self, code: str, redirect_uri: str) -> TokenGrant:
        """Exchange an authorization code for a short-lived token (valid one hour)."""
        body, usage = self._call(
            "POST",
            f"{self.api_base}/oauth/access_token",
            data={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "authorization_code",
                "redirect_uri": redirect_uri,
                "code": code.removesuffix("#_"),
            },
        )
        # Two documented shapes: {"data": [{...}]} and a flat {"access_token", "user_id"}.
        if isinstance(body.get("data"), list) and body["data"]:
            body = body["data"][0]
        return parse_grant(body, usage)

    def exchange_for_long_lived(self, short_lived_token: str) -> TokenGrant:
        """Exchange a short-lived token for a long-lived one (LONG_LIVED_TOKEN_LIFETIME)."""
        body, usage = self._call(
            "GET",
            f"{self.graph_base}/access_token",
            params={
                "grant_type": "ig_exchange_token",
                "client_secret": self.client_secret,
                "access_token": short_lived_token,
            },
        )
        return parse_grant(body, usage)

    def refresh(self, long_lived_token: str) -> TokenGrant:
        """Refresh a long-lived token (at least 24 hours old, not expired) for another LONG_LIVED_TOKEN_LIFETIME."""
        body, usage = self._call(
            "GET",
            f"{self.graph_base}/refresh_access_token",
            params={"grant_type": "ig_refresh_token", "access_token": long_lived_token},
        )
        return parse_grant(body, usage)

    def me(self, token: str) -> Profile:
        """Fetch the professional account behind the token.

        Raises AccountNotProfessional when Meta says the account is a personal one, and MetaApiError
        when the call fails. An optional field Meta refuses is dropped: /me is asked once more with
        the required fields only, and the refused field is not asked for again.
        """
        optional = [name for name in PROFILE_OPTIONAL_FIELDS if name not in self.refused_profile_fields]
        try:
            body, usage = self._profile(token, [*PROFILE_REQUIRED_FIELDS, *optional])
        except MetaApiError as error:
            refused = refused_fields(error)
            if refused is None or not optional or refused & set(PROFILE_REQUIRED_FIELDS):
                raise
            # A refusal that names no field we asked for optionally: stop asking for all of them.
            named = refused & set(optional)
            self.refused_profile_fields = self.refused_profile_fields | (named or set(optional))
            body, usage = self._profile(token, list(PROFILE_REQUIRED_FIELDS))
        user_id = body.get("user_id")
        if not user_id or isinstance(user_id, dict | list | bool):
            raise MetaApiError("profile response has no user_id", failure="malformed", usage=usage)
        scoped_id = body.get("id")
        profile = Profile(
            user_id=str(user_id),
            username=body.get("username") or None,
            name=body.get("name") or None,
            profile_picture_url=body.get("profile_picture_url") or None,
            account_type=body.get("account_type") or None,
            scoped_id=str(scoped_id) if scoped_id and not isinstance(scoped_id, dict | list | bool) else None,
            usage=usage,
        )
        if profile.is_personal:
            raise AccountNotProfessional(str(profile.account_type), usage=usage)
        return profile

    def _profile(self, token: str, fields: list[str]) -> tuple[dict, Usage]:
        return self._call(
            "GET",
            f"{self.graph_base}/{self.graph_version}/me",
            params={"fields": ",".join(fields), "access_token": token},
        )
