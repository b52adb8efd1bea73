"""Tokens at rest (promises 12, 13, 14)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from webapp.services.token_vault import TokenVault, TokenVaultError, fingerprint

KEY_1, KEY_2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_same_token_twice_gives_different_ciphertext():
    """Promise 12: encryption is randomised."""
    vault = TokenVault([KEY_1])
    first, second = vault.encrypt("IGAAcanary"), vault.encrypt("IGAAcanary")
    assert first != second and "IGAAcanary" not in first
    assert vault.decrypt(first) == vault.decrypt(second) == "IGAAcanary"


def test_key_rotation_without_downtime():
    """Promise 13: write with key 1, deploy [2, 1], read all, rotate, drop key 1, read all."""
    old = TokenVault([KEY_1]).encrypt("IGAAtoken")
    both = TokenVault([KEY_2, KEY_1])
    assert both.decrypt(old) == "IGAAtoken"
    rotated = both.rotate(old)
    assert TokenVault([KEY_2]).decrypt(rotated) == "IGAAtoken"
    with pytest.raises(TokenVaultError):
        TokenVault([KEY_2]).decrypt(old)


@pytest.mark.parametrize(
    "mutate",
    [lambda c: c[:-4] + "AAAA", lambda c: "x" + c[1:], lambda c: c[:20], lambda c: "", lambda c: "not base64 !"],
)
def test_tampered_ciphertext_is_rejected(mutate):
    """Promise 14: tampering gives a clean TokenVaultError, never garbage."""
    vault = TokenVault([KEY_1])
    with pytest.raises(TokenVaultError):
        vault.decrypt(mutate(vault.encrypt("IGAAtoken")))


def test_bad_key_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="not a Fernet key"):
        TokenVault(["short"])


def test_fingerprint_is_short_stable_and_one_way():
    assert fingerprint("IGAAtoken") == fingerprint("IGAAtoken")
    assert len(fingerprint("IGAAtoken")) == 12 and "IGAA" not in fingerprint("IGAAtoken")
