"""Sending mail over SMTP from MAIL_URL (smtp:// with STARTTLS, smtps://), or keeping it in the outbox."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit


class MailConfigError(ValueError):
    """MAIL_URL cannot be used; start-up stops with this message."""


class OutcomeUnknown(OSError):
    """The whole message reached the server but its answer did not reach us: it may have been delivered."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool  # smtps://
    starttls: bool  # smtp:// upgrades unless ?tls=none (local test servers only)
    sender: str
    timeout: float = 15.0  # the whole message, from connect to the server's answer (not per read)


def parse_mail_url(url: str, default_sender: str, timeout: float = 15.0) -> SmtpSettings:
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
        timeout=timeout,
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


class _Watched(smtplib.SMTP):
    """Notes when the end of a message's data has gone out, so a lost answer reads as 'unknown'."""

    body_sent = False
    deadline_passed = False

    def send(self, s):
        if self.deadline_passed:  # the timer fired while the socket was still connecting
            raise TimeoutError("the mail server took longer than the send timeout")
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):  # smtplib sends the data in one piece
            self.body_sent = True


class _WatchedSMTP(_Watched, smtplib.SMTP):
    pass


class _WatchedSMTPSSL(_Watched, smtplib.SMTP_SSL):
    pass


def _cut(client: _Watched) -> None:
    client.deadline_passed = True
    sock = getattr(client, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Deliver one message within `settings.timeout` seconds in all, however slowly the server answers.

    Socket timeouts bound each read, not the conversation; a timer cuts the connection at the
    deadline, so the caller's claim on the mail (longer than the deadline) outlives every send.

    Raises:
        OutcomeUnknown: the data went out but the server's answer did not come back; it may be
            delivered, so the caller must not simply send it again.
        smtplib.SMTPException, OSError: the server did not take the message (a refusal, or trouble
            before the data was complete); sending it again is safe.
    """
    client: _WatchedSMTP | _WatchedSMTPSSL
    if settings.implicit_tls:
        client = _WatchedSMTPSSL(timeout=settings.timeout, context=ssl.create_default_context())
    else:
        client = _WatchedSMTP(timeout=settings.timeout)
    deadline = threading.Timer(settings.timeout, _cut, (client,))
    deadline.daemon = True
    deadline.start()
    try:
        client.connect(settings.host, settings.port)
        client.ehlo()
        if settings.starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if settings.username:
            client.login(settings.username, settings.password or "")
        client.send_message(message)
    except smtplib.SMTPResponseException:
        raise  # the server answered, and said no
    except (OSError, smtplib.SMTPException) as error:
        if client.body_sent:
            raise OutcomeUnknown(f"no answer after the data was sent ({type(error).__name__}: {error})") from error
        raise
    finally:
        _close(client)  # still under the deadline: a server slow to say goodbye is cut off too
        deadline.cancel()


def _close(client: smtplib.SMTP) -> None:
    """Say goodbye if the line still works; the message's fate is already decided."""
    try:
        if client.sock is not None:
            client.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        client.close()
