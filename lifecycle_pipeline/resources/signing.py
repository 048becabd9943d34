"""Package signing with OpenSSF model signing (``model-signing``), key-based and offline.

The private key comes from configuration (a path, usually through ``LIFECYCLE_SIGNING_KEY``)
and never enters metadata or a package; its public key's id is recorded in every package, so a
verifier picks the key from its keyring (``keys.Keyring``) and keys can rotate. Without a
configured key, signing refuses to start unless the deployment allows development keys
(``LIFECYCLE_DEV_KEYS=1``: the demo and the tests); then a development key pair is created once
under ``LIFECYCLE_HOME/keys`` with 0600 permissions; it is git-ignored and must not sign
anything that ships.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.resources.keys import (
    KeyConfigError,
    Keyring,
    dev_keys_allowed,
    how_to_configure,
    key_id,
    keyring_path,
)
from lifecycle_pipeline.settings import Settings

SIGNATURE_FILE = "model.sig"


class SignatureError(LifecycleError, RuntimeError):
    """A package signature is missing or does not verify."""


def _dev_key_paths() -> tuple[Path, Path]:
    keys = Settings.from_env().home / "keys"
    return keys / "signing-key.pem", keys / "signing-key.pub"


def ensure_dev_key() -> tuple[Path, Path]:
    """Create the development key pair once (private key 0600), return (private, public).

    Concurrent runs on a fresh machine all reach this at once: each writes a pair into its own
    temporary folder and renames that folder into place, so the first one wins and every run
    signs with a private key that matches the public key beside it.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = _dev_key_paths()
    if private.exists() and public.exists():
        return private, public
    keys = private.parent
    keys.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".keys-", dir=keys.parent))  # created 0700
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(staging / private.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    (staging / public.name).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    try:
        staging.rename(keys)  # replaces only a missing or empty folder
    except OSError:
        shutil.rmtree(staging)  # another process won; use its pair
    if not (private.exists() and public.exists()):
        raise SignatureError(
            f"{keys} exists but lacks {private.name} or {public.name}; remove the folder to "
            "create a new development key pair, or set LIFECYCLE_SIGNING_KEY."
        )
    return private, public


# What a verifier is given: a keyring, or one public key file trusted alone.
TrustedKeys = Keyring | Path


def trusted_keys(given: str | None = None) -> Keyring:
    """The keys signatures are verified against: the one given (``--public-key``), else the
    keyring (``LIFECYCLE_TRUSTED_KEYS``, with the configured public key for signatures that
    record no key id), else the one configured public key, else, where development keys are
    allowed, the development key. Unconfigured otherwise: refused, never a default."""
    if given:
        return Keyring.single(Path(given), f"--public-key {given}")
    configured = os.environ.get("LIFECYCLE_SIGNING_PUBLIC_KEY")
    folder = keyring_path()
    if folder is not None:
        return Keyring.load(folder, Path(configured) if configured else None)
    if configured:
        return Keyring.single(Path(configured), f"LIFECYCLE_SIGNING_PUBLIC_KEY {configured}")
    if dev_keys_allowed():
        return Keyring.single(ensure_dev_key()[1], "the development key (LIFECYCLE_DEV_KEYS=1)")
    raise KeyConfigError(how_to_configure("The trusted public key (LIFECYCLE_SIGNING_PUBLIC_KEY)"))


def as_keyring(keys: TrustedKeys) -> Keyring:
    return keys if isinstance(keys, Keyring) else Keyring.single(keys)


def public_key_id(public_key: Path) -> str:
    """A short, non-secret identifier of the public key (recorded in packages and checkpoints)."""
    return key_id(public_key)


def development_keys_in_use() -> list[str]:
    """Which keys this process would use are development keys, each named with its file: for
    `lifecycle status` and `lifecycle doctor`, which say so instead of letting a key nobody
    chose pass for the deployment's."""
    from lifecycle_pipeline.lineage.audit import dev_audit_key_path

    if not dev_keys_allowed():
        return []
    found = []
    if not (
        os.environ.get("LIFECYCLE_SIGNING_KEY") or os.environ.get("LIFECYCLE_SIGNING_PUBLIC_KEY")
    ):
        found.append(f"signing key {_dev_key_paths()[0]}")
    if not os.environ.get("LIFECYCLE_AUDIT_KEY"):
        found.append(f"audit key {dev_audit_key_path()}")
    return found


def _hashing_config() -> object:
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE], ignore_git_paths=False)


def development_keys_notice() -> str | None:
    """The line `status` and `doctor` print while development keys are in use, else None."""
    found = development_keys_in_use()
    if not found:
        return None
    return (
        f"DEVELOPMENT KEYS in use (LIFECYCLE_DEV_KEYS=1): {'; '.join(found)}. Signatures, "
        "checkpoints and the audit log's keyed digests rest on keys nobody chose: configure "
        "the deployment's keys before anything ships (`lifecycle keys create DIR`)."
    )


def verify_signed(package: Path, keys: TrustedKeys, ident: str | None) -> Path:
    """Verify the folder's signature with the trusted key whose id it records (``ident``, from
    its manifest; None for a package signed before ids were recorded); return that key."""
    try:
        public_key = as_keyring(keys).public_key(ident, f"{package / SIGNATURE_FILE}")
    except KeyConfigError as exc:
        raise SignatureError(str(exc)) from exc
    verify_signature(package, public_key)
    return public_key


def verify_signature(package: Path, public_key: Path) -> None:
    """Raise SignatureError naming what differs; return quietly when the signature holds."""
    from model_signing import verifying

    signature = package / SIGNATURE_FILE
    if not signature.is_file():
        raise SignatureError(f"{signature}: signature file is missing; the package is unsigned.")
    try:
        (
            verifying.Config()
            .use_elliptic_key_verifier(public_key=public_key)
            .set_hashing_config(_hashing_config())  # type: ignore[arg-type]
            .verify(package, signature)
        )
    except Exception as exc:  # model-signing raises ValueError and library-specific errors
        raise SignatureError(
            f"{signature}: does not verify with {public_key}: {_readable(exc)}"
        ) from exc


def _readable(exc: Exception) -> str:
    """model-signing lists changed files as the repr of a list of reprs of digests: name the
    files instead, in the order given (the digests are in the manifest for whoever needs them).
    """
    import re

    text = str(exc)
    changed = re.findall(r"Hash mismatch for \\*'([^'\\]+)", text)
    if changed:
        return f"the signed digest differs for {', '.join(dict.fromkeys(changed))}"
    return text


class PackageSigner(dg.ConfigurableResource):
    """Signs deployment packages; teams pass their key by path (secrets via EnvVar)."""

    private_key_path: str | None = Field(
        default=None,
        description="PEM private key; default $LIFECYCLE_SIGNING_KEY (a development key only "
        "where LIFECYCLE_DEV_KEYS=1).",
    )
    public_key_path: str | None = Field(
        default=None, description="PEM public key; default $LIFECYCLE_SIGNING_PUBLIC_KEY."
    )

    def key_pair(self) -> tuple[Path, Path]:
        private = self.private_key_path or os.environ.get("LIFECYCLE_SIGNING_KEY")
        public = self.public_key_path or os.environ.get("LIFECYCLE_SIGNING_PUBLIC_KEY")
        if private and public:
            return Path(private), Path(public)
        if private or public:
            raise SignatureError(
                "Set both LIFECYCLE_SIGNING_KEY and LIFECYCLE_SIGNING_PUBLIC_KEY (or neither, "
                "where LIFECYCLE_DEV_KEYS=1 allows the local development key)."
            )
        if not dev_keys_allowed():
            raise KeyConfigError(
                how_to_configure(
                    "The signing key (LIFECYCLE_SIGNING_KEY, LIFECYCLE_SIGNING_PUBLIC_KEY)"
                )
            )
        return ensure_dev_key()

    def signing_pair(self) -> tuple[Path, Path]:
        """``key_pair()``, refused when the keyring says its public key is revoked or does not
        list it: what it signs would not verify anywhere that trusts this keyring."""
        private, public = self.key_pair()
        folder = keyring_path()
        if folder is not None:
            try:
                Keyring.load(folder).public_key(key_id(public), f"a signature by {public}")
            except KeyConfigError as exc:
                raise SignatureError(f"refusing to sign: {exc}") from exc
        return private, public

    def sign(self, package: Path) -> str:
        """Sign the folder in place (writes model.sig); return the public key id."""
        from model_signing import signing

        private, public = self.signing_pair()
        (
            signing.Config()
            .use_elliptic_key_signer(private_key=private)
            .set_hashing_config(_hashing_config())  # type: ignore[arg-type]
            .sign(package, package / SIGNATURE_FILE)
        )
        verify_signature(package, public)
        return public_key_id(public)
