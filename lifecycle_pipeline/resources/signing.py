"""Package signing with OpenSSF model signing (``model-signing``), key-based and offline.

The private key comes from configuration (a path, usually through ``LIFECYCLE_SIGNING_KEY``)
and never enters metadata or a package. Without one, a development key pair is created once
under ``LIFECYCLE_HOME/keys`` with 0600 permissions; it is git-ignored and must not sign
anything that ships.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from lifecycle_pipeline.errors import LifecycleError
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


def trusted_public_key(given: str | None = None) -> Path:
    """The public key packages are verified against: the one given, else the configured one."""
    return Path(given) if given else PackageSigner().key_pair()[1]


def public_key_id(public_key: Path) -> str:
    """A short, non-secret identifier of the public key (recorded in package metadata)."""
    return hashlib.sha256(public_key.read_bytes()).hexdigest()[:16]


def _hashing_config() -> object:
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE], ignore_git_paths=False)


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
        default=None, description="PEM private key; default $LIFECYCLE_SIGNING_KEY, else a dev key."
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
                "to use the local development key)."
            )
        return ensure_dev_key()

    def sign(self, package: Path) -> str:
        """Sign the folder in place (writes model.sig); return the public key id."""
        from model_signing import signing

        private, public = self.key_pair()
        (
            signing.Config()
            .use_elliptic_key_signer(private_key=private)
            .set_hashing_config(_hashing_config())  # type: ignore[arg-type]
            .sign(package, package / SIGNATURE_FILE)
        )
        verify_signature(package, public)
        return public_key_id(public)
