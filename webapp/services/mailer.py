"""Sending mail over SMTP from MAIL_URL (smtp:// with STARTTLS, smtps://), or keeping it in the outbox."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit


class MailConfigError(ValueError):
    """MAIL_URL cannot be used; start-up stops with this message."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool  # smtps://
    starttls: bool  # smtp:// upgrades unless ?tls=none (local test servers only)
    sender: str
    timeout: float = 15.0


def parse_mail_url(url: str, default_sender: str) -> SmtpSettings:
    """Read smtp://user:pass@host:587, smtps://user:pass@host:465; ?from=... sets the sender."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise MailConfigError(f"MAIL_URL must start with smtp:// or smtps://, not {parts.scheme or 'nothing'}://.")
    if not parts.hostname:
        raise MailConfigError("MAIL_URL has no host, e.g. smtp://user:password@smtp.example.com:587.")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 587)
    except ValueError as exc:
        raise MailConfigError("MAIL_URL has a port that is not a number.") from exc
    query = parse_qs(parts.query)
    tls = (query.get("tls") or ["auto"])[0]
    if tls not in ("auto", "none"):
        raise MailConfigError("MAIL_URL's tls parameter must be 'none' (local test servers only) or absent.")
    return SmtpSettings(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=parts.scheme == "smtps",
        starttls=parts.scheme == "smtp" and tls != "none",
        sender=(query.get("from") or [default_sender])[0],
    )


def build_message(
    *, sender: str, to: str, subject: str, text: str, html: str, unsubscribe_url: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip(">") or None)
    if unsubscribe_url:
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Deliver one message; raises smtplib.SMTPException or OSError on failure."""
    if settings.implicit_tls:
        client = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with client:
        client.ehlo()
        if settings.starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if settings.username:
            client.login(settings.username, settings.password or "")
        client.send_message(message)
