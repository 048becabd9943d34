"""Which keys this deployment signs with and trusts: configured on purpose, never a default.

Settings (environment variables, usually from a secret mount):

- ``LIFECYCLE_SIGNING_KEY`` / ``LIFECYCLE_SIGNING_PUBLIC_KEY``: the PEM key pair that signs
  deployment packages and audit checkpoints now;
- ``LIFECYCLE_AUDIT_KEY``: the file holding the audit log's HMAC key;
- ``LIFECYCLE_TRUSTED_KEYS``: the keyring, a folder of trusted public keys, so the signing key
  can rotate (see ``Keyring``); without it, the one configured public key is trusted alone;
- ``LIFECYCLE_DEV_KEYS=1``: development keys, created under ``$LIFECYCLE_HOME/keys``, are
  allowed where nothing is configured. Only the demo, the tests and the Makefile's demo
  targets set it: without it, signing and the audit log refuse to start unconfigured, since
  tamper evidence resting on a key nobody chose vouches for nothing.

``lifecycle keys create DIR`` writes a key set and prints the settings that use it.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lifecycle_pipeline.errors import LifecycleError

DEV_KEYS_ENV = "LIFECYCLE_DEV_KEYS"
KEYRING_ENV = "LIFECYCLE_TRUSTED_KEYS"
REVOKED = "revoked"


class KeyConfigError(LifecycleError, RuntimeError):
    """No key is configured where one is needed, or a configured key cannot be used."""


def dev_keys_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the deployment said development keys are acceptable (``LIFECYCLE_DEV_KEYS=1``)."""
    env = os.environ if environ is None else environ
    return env.get(DEV_KEYS_ENV, "") == "1"


def how_to_configure(what: str) -> str:
    """The refusal for an unconfigured key: what is missing, and the two ways forward."""
    return (
        f"{what} is not configured, and development keys are not allowed here. Create a key set "
        "with `lifecycle keys create DIR` (or: `openssl ecparam -name prime256v1 -genkey -noout "
        "| openssl pkcs8 -topk8 -nocrypt -out DIR/signing-key.pem; openssl ec -in "
        "DIR/signing-key.pem -pubout -out DIR/signing-key.pub; openssl rand -hex 32 > "
        "DIR/audit.key; chmod 600 DIR/*`), then set LIFECYCLE_SIGNING_KEY=DIR/signing-key.pem, "
        "LIFECYCLE_SIGNING_PUBLIC_KEY=DIR/signing-key.pub and LIFECYCLE_AUDIT_KEY=DIR/audit.key "
        "(docs/governance.md, 'Keys'). For a demo or tests only, set LIFECYCLE_DEV_KEYS=1 to "
        "use development keys under $LIFECYCLE_HOME/keys."
    )


def key_id(public_key: Path) -> str:
    """A public key's id: the first 16 hex digits of the sha256 of its PEM, re-serialized so
    that line endings or a trailing newline do not change it (for PEM files written by
    ``cryptography`` or openssl, the sha256 of the file itself: ids recorded before this
    function existed stay the same)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(public_key.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyConfigError(f"{public_key}: not a readable PEM public key ({exc})") from exc
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()[:16]


@dataclass(frozen=True)
class Keyring:
    """The public keys whose signatures this deployment accepts, by key id.

    On disk (``LIFECYCLE_TRUSTED_KEYS``), a folder::

        <key id>.pub            trusted: packages and checkpoints it signed verify
        revoked/<key id>.pub    revoked: every signature it made is refused

    A package's manifest and a checkpoint record the id of the key that signed them, so after
    a rotation the old key's signatures still verify with the old key and the new key's with
    the new one. ``legacy`` is the key for signatures that record no id (made before ids were
    recorded): the one configured public key, never a guess among several.
    """

    trusted: dict[str, Path] = field(default_factory=dict)
    revoked: dict[str, Path] = field(default_factory=dict)
    legacy: str | None = None
    source: str = "the configured public key"
    alone: bool = False  # one key trusted alone: every signature is checked against it

    @classmethod
    def single(cls, public_key: Path, source: str | None = None) -> Keyring:
        """One public key trusted alone (``--public-key``, or no keyring configured)."""
        ident = key_id(public_key)
        return cls({ident: public_key}, {}, ident, source or str(public_key), alone=True)

    @classmethod
    def load(cls, folder: Path, legacy: Path | None = None) -> Keyring:
        if not folder.is_dir():
            raise KeyConfigError(
                f"keyring {folder} ({KEYRING_ENV}) is not a folder; `lifecycle keys trust PUB` "
                "creates it with its first key."
            )
        trusted = cls._read(folder)
        revoked = cls._read(folder / REVOKED) if (folder / REVOKED).is_dir() else {}
        both = sorted(set(trusted) & set(revoked))
        if both:
            raise KeyConfigError(
                f"keyring {folder}: key(s) {', '.join(both)} are both trusted and revoked; "
                f"remove {folder}/<id>.pub to finish the revocation."
            )
        legacy_id = key_id(legacy) if legacy is not None else None
        return cls(trusted, revoked, legacy_id, f"keyring {folder}")

    @staticmethod
    def _read(folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for path in sorted(folder.glob("*.pub")):
            ident = key_id(path)
            if path.stem != ident:
                raise KeyConfigError(
                    f"{path}: holds key {ident}, not {path.stem}; a keyring names each key by "
                    "its id (`lifecycle keys trust PUB` adds one so)."
                )
            found[ident] = path
        return found

    def public_key(self, ident: str | None, what: str) -> Path:
        """The trusted key with id ``ident`` (None: the signature records none), else
        KeyConfigError saying why ``what``'s signature cannot be accepted. A key trusted alone
        is returned whatever id is recorded: its signature check then says whether it holds,
        naming the key, as before keyrings existed."""
        if self.alone and self.legacy is not None:
            return self.trusted[self.legacy]
        if ident is None:
            if self.legacy is None or self.legacy not in self.trusted:
                raise KeyConfigError(
                    f"{what} records no signing key id (signed before key ids were recorded), "
                    f"and {self.source} has no single configured key to verify it with: set "
                    "LIFECYCLE_SIGNING_PUBLIC_KEY to the key that signed it, or pass --public-key."
                )
            return self.trusted[self.legacy]
        if ident in self.revoked:
            raise KeyConfigError(
                f"{what} was signed with key {ident}, which is revoked in {self.source} "
                f"({self.revoked[ident]}): its signatures are refused. Re-sign with a trusted key "
                "(docs/runbooks/rotating-keys.md)."
            )
        if ident not in self.trusted:
            raise KeyConfigError(
                f"{what} was signed with key {ident}, which {self.source} does not trust "
                f"(trusted: {', '.join(sorted(self.trusted)) or 'none'}); add its public key with "
                "`lifecycle keys trust PUB` if it is yours."
            )
        return self.trusted[ident]


def keyring_path(environ: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    configured = env.get(KEYRING_ENV)
    return Path(configured) if configured else None


def trust(folder: Path, public_key: Path) -> str:
    """Add a public key to the keyring folder under its id; return the id."""
    ident = key_id(public_key)
    if (folder / REVOKED / f"{ident}.pub").exists():
        raise KeyConfigError(
            f"key {ident} is revoked in {folder}; a revoked key is not trusted again."
        )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{ident}.pub"
    if not target.exists():
        shutil.copyfile(public_key, target)
    return ident


def revoke(folder: Path, ident: str) -> Path:
    """Move a trusted key to ``revoked/``: every signature it made is refused from now on."""
    if not re.fullmatch(r"[0-9a-f]{16}", ident):
        raise KeyConfigError(
            f"{ident!r} is not a key id (16 lower-case hex digits, as `lifecycle keys list` shows)."
        )
    source = folder / f"{ident}.pub"
    if not source.is_file():
        raise KeyConfigError(f"keyring {folder} holds no trusted key {ident} ({source}).")
    (folder / REVOKED).mkdir(exist_ok=True)
    target = folder / REVOKED / source.name
    source.replace(target)
    return target


def create_key_set(folder: Path) -> dict[str, Path]:
    """A new signing key pair and audit key in ``folder`` (private files 0600, never replaced)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {
        "LIFECYCLE_SIGNING_KEY": folder / "signing-key.pem",
        "LIFECYCLE_SIGNING_PUBLIC_KEY": folder / "signing-key.pub",
        "LIFECYCLE_AUDIT_KEY": folder / "audit.key",
    }
    present = [str(p) for p in paths.values() if p.exists()]
    if present:
        raise KeyConfigError(
            f"{', '.join(present)} already exist; keys are never overwritten: choose an empty "
            "folder."
        )
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for name, data in (
        ("LIFECYCLE_SIGNING_KEY", private),
        ("LIFECYCLE_AUDIT_KEY", secrets.token_hex(32).encode()),
    ):
        descriptor = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
    paths["LIFECYCLE_SIGNING_PUBLIC_KEY"].write_bytes(public)
    return paths
