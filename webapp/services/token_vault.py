"""Encryption of access tokens at rest (MultiFernet: newest key first, older keys still read)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)


class TokenVaultError(RuntimeError):
    """A stored token cannot be read: tampered, or written under a key we no longer have."""


class TokenVault:
    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one encryption key is needed")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except (ValueError, TypeError) as exc:
            raise ValueError(
                "TOKEN_ENCRYPTION_KEYS holds a value that is not a Fernet key "
                "(32 url-safe base64-encoded bytes; generate one with Fernet.generate_key())."
            ) from exc

    def encrypt(self, token: str) -> str:
        """Encrypt with the newest key; the same token twice gives different ciphertext."""
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except (InvalidToken, ValueError, TypeError) as exc:
            raise TokenVaultError("stored token could not be decrypted (tampered, or its key was removed)") from exc

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the newest key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except (InvalidToken, ValueError, TypeError) as exc:
            raise TokenVaultError("stored token could not be decrypted (tampered, or its key was removed)") from exc


def fingerprint(token: str) -> str:
    """A short, one-way label for a token: safe to show, log and compare."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def parse_keys(raw: str) -> list[str]:
    return [key.strip() for key in raw.split(",") if key.strip()]


def development_key(instance_path: str) -> str:
    """Return the local key from the instance folder, creating it once (never in production)."""
    path = Path(instance_path) / "token-encryption-key"
    if path.exists():
        return path.read_text().strip()
    key = Fernet.generate_key().decode()
    path.write_text(key + "\n")
    path.chmod(0o600)
    log.warning("Created a development token encryption key in %s (set TOKEN_ENCRYPTION_KEYS in production).", path)
    return key
