"""Coarse client fingerprints: enough to tell networks and browsers apart, never a full IP."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_BROWSER_PATTERNS = (
    ("Edge", re.compile(r"Edg(e|A|iOS)?/")),
    ("Opera", re.compile(r"OPR/|Opera")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/")),
    ("Instagram app", re.compile(r"Instagram \d")),
    ("Facebook app", re.compile(r"FBAN|FBAV")),
    ("Chrome", re.compile(r"Chrome/|CriOS/|HeadlessChrome/")),
    ("Firefox", re.compile(r"Firefox/|FxiOS/")),
    ("Safari", re.compile(r"Safari/")),
)
_OS_PATTERNS = (
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Android", re.compile(r"Android")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("Linux", re.compile(r"Linux|X11")),
)


def ip_prefix(remote_addr: str | None) -> str:
    """Return the /24 (IPv4) or /48 (IPv6) network of an address, or '' when unknown."""
    if not remote_addr:
        return ""
    try:
        address = ipaddress.ip_address(remote_addr.strip())
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def user_agent_family(user_agent: str | None) -> str:
    """Return 'Browser on OS' from a User-Agent header, e.g. 'Chrome on Android'."""
    if not user_agent:
        return "Unknown"
    browser = next((name for name, pattern in _BROWSER_PATTERNS if pattern.search(user_agent)), "Other browser")
    system = next((name for name, pattern in _OS_PATTERNS if pattern.search(user_agent)), "")
    return f"{browser} on {system}" if system else browser


@dataclass(frozen=True)
class ClientFingerprint:
    """Coarse: the /24 or /48 network and 'Browser on OS', never the full address."""

    ip_prefix: str
    user_agent_family: str

    @classmethod
    def from_request(cls, remote_addr: str | None, user_agent: str | None) -> ClientFingerprint:
        return cls(ip_prefix(remote_addr), user_agent_family(user_agent))
