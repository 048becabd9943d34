"""Signed checkpoints of an audit log's head: evidence of the log that lives outside it.

The log's own chain and keyed digests catch an edited, deleted, reordered or forged record, but
not a log whose last records were cut off, or one restored from an older copy: what remains
still chains. A checkpoint is the head (record count, sequence number and hash) signed with the
deployment's signing key. Promotions, rollbacks and `audit export` write one, and
`lifecycle audit checkpoint` writes one on demand (to ship to a store the log's writers cannot
change: that copy is the external witness). `audit verify` holds the log against every
checkpoint it is given or finds: each must name a record the log still holds, with the same
hash, and the signature must verify with the trusted key whose id the checkpoint records
(``public_key_id``, looked up in the keyring, so the signing key can rotate; a revoked key's
checkpoints are refused).

Checkpoint files are written once (exclusive create) and never rewritten.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle_pipeline.lineage.audit import AuditError, AuditLog, Record
from lifecycle_pipeline.lineage.hashing import canonical_json
from lifecycle_pipeline.resources.keys import KeyConfigError, Keyring

if TYPE_CHECKING:
    from lifecycle_pipeline.resources.signing import TrustedKeys

FORMAT = 1
ALGORITHM = "ecdsa-p256-sha256"
ENV = "LIFECYCLE_AUDIT_CHECKPOINTS"


def model_of(log: AuditLog) -> str:
    return log.model or log.path.stem


def checkpoint_dir(log: AuditLog) -> Path:
    """Where a log's checkpoints are written and found: ``$LIFECYCLE_AUDIT_CHECKPOINTS/<model>``
    (e.g. a mounted bucket), else ``checkpoints/<model>`` beside the log."""
    configured = os.environ.get(ENV)
    base = Path(configured) if configured else log.path.parent / "checkpoints"
    return base / model_of(log)


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    body: dict[str, Any]
    signature: str

    @property
    def seq(self) -> int:
        return int(self.body["seq"])

    @property
    def head(self) -> str:
        return str(self.body["head"])

    def describe(self) -> str:
        return f"checkpoint {self.path} (record {self.seq}, signed {self.body.get('time')})"


def _private_key() -> Any:
    from cryptography.hazmat.primitives import serialization

    from lifecycle_pipeline.resources.signing import PackageSigner

    private, _ = PackageSigner().signing_pair()
    return serialization.load_pem_private_key(private.read_bytes(), password=None)


def signing_key() -> Any:
    """The key checkpoints are signed with, loaded now: a change that will end in a checkpoint
    asks for it before it appends anything, so a key that is missing or half configured stops
    the change instead of leaving it recorded without its witness."""
    return _private_key()


def write_checkpoint(log: AuditLog, folder: Path | None = None, key: Any = None) -> Path:
    """Sign the log's current head into a new file in ``folder`` (default ``checkpoint_dir``).

    Refused for a log that does not verify: a checkpoint vouches for what it signs."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from lifecycle_pipeline.resources.signing import PackageSigner, public_key_id

    report = log.verify()
    if not report.ok:
        raise AuditError("no checkpoint of a log that does not verify:\n" + report.render())
    if report.records == 0:
        raise AuditError(f"{log.path}: the log holds no record yet; nothing to checkpoint.")
    body = {
        "format": FORMAT,
        "model": model_of(log),
        "log": str(log.path),
        "records": report.records,
        "seq": report.records - 1,
        "head": report.head,
        "time": datetime.now(tz=UTC).isoformat(timespec="microseconds"),
        "public_key_id": public_key_id(PackageSigner().signing_pair()[1]),
    }
    signature = (key or _private_key()).sign(canonical_json(body), ec.ECDSA(hashes.SHA256()))
    document = {
        "checkpoint": body,
        "algorithm": ALGORITHM,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    target_dir = folder or checkpoint_dir(log)
    target_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = target_dir / f"{body['seq']:08d}-{report.head[:16]}-{stamp}.json"
    partial = target.with_name(f".{target.name}.partial")
    with partial.open("x", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.link(partial, target)  # never replaces an existing checkpoint
    partial.unlink()
    return target


def read_checkpoint(path: Path) -> Checkpoint:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        body = dict(raw["checkpoint"])
        int(body["seq"]), str(body["head"]), str(body["model"])
        if raw.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {raw.get('algorithm')!r}, expected {ALGORITHM}")
        return Checkpoint(path, body, str(raw["signature"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"checkpoint {path}: unreadable ({exc})") from None


def found_checkpoints(log: AuditLog) -> list[Path]:
    folder = checkpoint_dir(log)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _keys(given: TrustedKeys | None) -> Keyring | str:
    """The keys checkpoints are verified with (``given``, else the deployment's trusted keys),
    or why there are none. Never created here: verifying must not make a development key
    that would then vouch for nothing."""
    from lifecycle_pipeline.resources.keys import dev_keys_allowed
    from lifecycle_pipeline.resources.signing import _dev_key_paths, as_keyring, trusted_keys

    if given is not None:
        return as_keyring(given)
    if (
        dev_keys_allowed()
        and not os.environ.get("LIFECYCLE_SIGNING_PUBLIC_KEY")
        and not os.environ.get("LIFECYCLE_TRUSTED_KEYS")
    ):
        dev = _dev_key_paths()[1]
        if not dev.is_file():
            return (
                "no public key to verify it with; set LIFECYCLE_SIGNING_PUBLIC_KEY or pass "
                "--public-key"
            )
    try:
        return trusted_keys()
    except KeyConfigError as exc:
        return str(exc)


def _signature_holds(checkpoint: Checkpoint, public_key: Path) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(public_key.read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AuditError(f"{public_key}: not an elliptic-curve public key")
    try:
        key.verify(
            base64.b64decode(checkpoint.signature),
            canonical_json(checkpoint.body),
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def checkpoint_problems(
    log: AuditLog, given: list[Path] | None = None, public_key: TrustedKeys | None = None
) -> list[str]:
    """The log against every checkpoint found beside it and every one ``given``.

    A checkpoint that does not verify is a problem of its own (forged, edited, or signed with
    another key); one that verifies but names a record the log no longer holds, or holds with
    another hash, means the log was cut short, restored from an older copy or replaced.
    """
    paths = list(dict.fromkeys([*found_checkpoints(log), *(given or [])]))
    if not paths:
        return []
    keys = _keys(public_key)
    held: dict[int, Record] = {}
    if log.path.exists():
        held = {record.seq: record for record in _readable(log)}
    problems: list[str] = []
    model = model_of(log)
    for path in paths:
        try:
            checkpoint = read_checkpoint(path)
        except AuditError as exc:
            problems.append(str(exc))
            continue
        if isinstance(keys, str):
            problems.append(f"{checkpoint.describe()}: {keys}")
            continue
        recorded = checkpoint.body.get("public_key_id")
        try:  # the key whose id the checkpoint records; the configured one when it has none
            key = keys.public_key(
                None if recorded is None else str(recorded), checkpoint.describe()
            )
        except KeyConfigError as exc:
            problems.append(str(exc))
            continue
        if not _signature_holds(checkpoint, key):
            problems.append(
                f"{checkpoint.describe()}: signature does not verify with {key}: the checkpoint "
                "was forged or edited, or signed with another key"
            )
            continue
        if checkpoint.body["model"] != model:
            problems.append(
                f"{checkpoint.describe()}: witnesses model {checkpoint.body['model']!r}, not "
                f"{model!r}: it belongs to another log"
            )
            continue
        record = held.get(checkpoint.seq)
        if not log.path.exists():
            problems.append(
                f"{checkpoint.describe()}: witnessed {checkpoint.seq + 1} record(s), but the log "
                f"{log.path} does not exist: it was deleted"
            )
        elif record is None:
            problems.append(
                f"{checkpoint.describe()}: witnessed record {checkpoint.seq} (head "
                f"{checkpoint.head[:16]}), which the log no longer holds ({len(held)} record(s)):"
                " the log was cut short or restored from an older copy"
            )
        elif record.hash != checkpoint.head:
            problems.append(
                f"{checkpoint.describe()}: witnessed hash {checkpoint.head[:16]} for record "
                f"{checkpoint.seq}, the log holds {record.hash[:16]}: the log was replaced"
            )
    return problems


def _readable(log: AuditLog) -> list[Record]:
    """The records that still parse, from a log that does not verify (its own problems are
    reported by verify; here they only must not hide what the checkpoints say)."""
    found = []
    for line in log.path.read_bytes().split(b"\n"):
        try:
            found.append(Record.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return found
