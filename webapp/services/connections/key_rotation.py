"""Re-encrypt every stored token under the newest key (`flask --app wsgi tokens rotate-keys`).

Tokens live in several columns: each connection's token (Instagram's, or a Facebook Page's), Facebook
Login's user token beside it, and the tokens of logins parked for the merchant (a switch to confirm,
a Page to pick). Webhook endpoints' signing secrets are encrypted with the same keys and move with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import CursorResult, literal, select, update

from webapp.extensions import db
from webapp.models import InstagramConnection, PendingConnection, PendingFacebookLogin, WebhookEndpoint
from webapp.services.connections.state import FENCED_WRITE_ATTEMPTS
from webapp.services.token_vault import TokenVault, TokenVaultError


@dataclass
class RotationReport:
    rotated: int
    failed: list[str]
    # Rows other writers kept changing while we re-encrypted them: still under an older key.
    changed_meanwhile: int = 0


ROTATION_BATCH = 200
# Every encrypted column: (table, column, what a failure report calls a row of it).
ENCRYPTED_COLUMNS = (
    (InstagramConnection, "token_ciphertext", "connection"),
    (InstagramConnection, "user_token_ciphertext", "connection's Facebook user token"),
    (PendingConnection, "token_ciphertext", "pending switch"),
    (PendingFacebookLogin, "secrets_ciphertext", "pending Facebook login"),
    (WebhookEndpoint, "secret_ciphertext", "webhook endpoint secret"),
)


def rotate_token_keys(vault: TokenVault, batch_size: int = ROTATION_BATCH) -> RotationReport:
    """Re-encrypt every stored token under the newest key, in short batches, never over a newer write.

    Each row is replaced only if its ciphertext is still the one that was read (compare-and-set),
    so a disconnect, a data deletion or a refresh made meanwhile stands. A connection's version
    moves too, so a refresh in flight cannot write back over the rotation either (promise 33).
    Unreadable rows are reported, not fatal.
    """
    report = RotationReport(0, [])
    for model, column_name, label in ENCRYPTED_COLUMNS:
        column = getattr(model, column_name)
        last_id = 0
        while True:
            shop = model.shop_id if hasattr(model, "shop_id") else literal(None)  # endpoints belong to no shop
            rows = db.session.execute(
                select(model.id, shop.label("shop_id"), column.label("ciphertext"))
                .where(column.is_not(None), model.id > last_id)
                .order_by(model.id)
                .limit(batch_size)
            ).all()
            db.session.rollback()  # no transaction open while decrypting and encrypting
            if not rows:
                break
            for row in rows:
                _rotate_row(model, column_name, label, row, vault, report)
            db.session.commit()
            last_id = rows[-1].id
    return report


def _rotate_row(model, column_name: str, label: str, row, vault: TokenVault, report: RotationReport) -> None:
    column = getattr(model, column_name)
    ciphertext = row.ciphertext
    for _ in range(FENCED_WRITE_ATTEMPTS):
        try:
            new_ciphertext = vault.rotate(ciphertext)
        except TokenVaultError:
            report.failed.append(f"{label} {row.id}" + (f" (shop {row.shop_id})" if row.shop_id else ""))
            return
        values: dict[str, object] = {column_name: new_ciphertext}
        if model is InstagramConnection:
            values["version"] = InstagramConnection.version + 1
        # Session.execute types every result as a plain Result; an UPDATE's is a CursorResult.
        result = cast(
            CursorResult,
            db.session.execute(
                update(model)
                .where(model.id == row.id, column == ciphertext)
                .values(**values)
                .execution_options(synchronize_session=False)
            ),
        )
        if result.rowcount == 1:
            report.rotated += 1
            return
        # Someone wrote the row since we read it: rotate what is there now, if anything.
        ciphertext = db.session.scalar(select(column).where(model.id == row.id))
        if ciphertext is None:
            return  # deleted meanwhile: nothing left to re-encrypt
    report.changed_meanwhile += 1
