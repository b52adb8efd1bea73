"""Re-encrypt every stored token under the newest key (`flask --app wsgi tokens rotate-keys`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import CursorResult, select, update

from webapp.extensions import db
from webapp.models import InstagramConnection, PendingConnection
from webapp.services.connections.state import FENCED_WRITE_ATTEMPTS
from webapp.services.token_vault import TokenVault, TokenVaultError


@dataclass
class RotationReport:
    rotated: int
    failed: list[str]
    # Rows other writers kept changing while we re-encrypted them: still under an older key.
    changed_meanwhile: int = 0


ROTATION_BATCH = 200


def rotate_token_keys(vault: TokenVault, batch_size: int = ROTATION_BATCH) -> RotationReport:
    """Re-encrypt every stored token under the newest key, in short batches, never over a newer write.

    Each row is replaced only if its ciphertext is still the one that was read (compare-and-set),
    so a disconnect, a data deletion or a refresh made meanwhile stands. A connection's version
    moves too, so a refresh in flight cannot write back over the rotation either (promise 33).
    Unreadable rows are reported, not fatal.
    """
    report = RotationReport(0, [])
    for model, label in ((InstagramConnection, "connection"), (PendingConnection, "pending switch")):
        last_id = 0
        while True:
            rows = db.session.execute(
                select(model.id, model.shop_id, model.token_ciphertext)
                .where(model.token_ciphertext.is_not(None), model.id > last_id)
                .order_by(model.id)
                .limit(batch_size)
            ).all()
            db.session.rollback()  # no transaction open while decrypting and encrypting
            if not rows:
                break
            for row in rows:
                _rotate_row(model, label, row, vault, report)
            db.session.commit()
            last_id = rows[-1].id
    return report


def _rotate_row(model, label: str, row, vault: TokenVault, report: RotationReport) -> None:
    ciphertext = row.token_ciphertext
    for _ in range(FENCED_WRITE_ATTEMPTS):
        try:
            new_ciphertext = vault.rotate(ciphertext)
        except TokenVaultError:
            report.failed.append(f"{label} {row.id} (shop {row.shop_id})")
            return
        values: dict[str, object] = {"token_ciphertext": new_ciphertext}
        if model is InstagramConnection:
            values["version"] = InstagramConnection.version + 1
        # Session.execute types every result as a plain Result; an UPDATE's is a CursorResult.
        result = cast(
            CursorResult,
            db.session.execute(
                update(model)
                .where(model.id == row.id, model.token_ciphertext == ciphertext)
                .values(**values)
                .execution_options(synchronize_session=False)
            ),
        )
        if result.rowcount == 1:
            report.rotated += 1
            return
        # Someone wrote the row since we read it: rotate what is there now, if anything.
        ciphertext = db.session.scalar(select(model.token_ciphertext).where(model.id == row.id))
        if ciphertext is None:
            return  # deleted meanwhile: nothing left to re-encrypt
    report.changed_meanwhile += 1
