"""`lifecycle keys`: create a key set, and keep the keyring that lets signing keys rotate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lifecycle_pipeline.errors import SettingError


def _keyring(args: argparse.Namespace) -> Path:
    from lifecycle_pipeline.resources.keys import KEYRING_ENV, keyring_path

    folder = Path(args.keyring) if args.keyring else keyring_path()
    if folder is None:
        raise SettingError(f"Which keyring? Pass --keyring FOLDER or set {KEYRING_ENV}.")
    return folder


def _create(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.resources.keys import create_key_set, key_id

    paths = create_key_set(Path(args.folder))
    ident = key_id(paths["LIFECYCLE_SIGNING_PUBLIC_KEY"])
    print(f"created signing key {ident} and an audit key in {args.folder}; configure them with:")
    for name, path in paths.items():
        print(f"  export {name}={path.resolve()}")
    print(
        "then `lifecycle keys trust "
        f"{paths['LIFECYCLE_SIGNING_PUBLIC_KEY']} --keyring FOLDER` and "
        "LIFECYCLE_TRUSTED_KEYS=FOLDER to rotate later (docs/runbooks/rotating-keys.md)."
    )
    return 0


def _trust(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.resources.keys import trust

    folder = _keyring(args)
    print(f"trusted key {trust(folder, Path(args.pem))} in {folder}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.resources.keys import revoke

    moved = revoke(_keyring(args), args.key_id)
    print(f"revoked key {args.key_id}: moved to {moved}; its signatures are refused from now on")
    return 0


def _list(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.resources.keys import Keyring

    keyring = Keyring.load(_keyring(args))
    for ident, path in sorted(keyring.trusted.items()):
        print(f"{ident}  trusted  {path}")
    for ident, path in sorted(keyring.revoked.items()):
        print(f"{ident}  REVOKED  {path}")
    return 0


def register(commands: Any) -> None:
    """Add `lifecycle keys` to the `lifecycle` parser."""
    keys = commands.add_parser("keys", help="Create keys; trust, revoke and list keyring keys.")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="Write a signing key pair and an audit key (0600) into a new folder."
    )
    create.add_argument("folder", help="where to write them (existing keys are never replaced)")
    create.set_defaults(handler=_create)
    for name, handler, helptext in (
        ("trust", _trust, "Add a public key (PEM) to the keyring under its id."),
        ("revoke", _revoke, "Move a key to the keyring's revoked/ folder: its signatures fail."),
        ("list", _list, "The keyring's trusted and revoked keys."),
    ):
        action = actions.add_parser(name, help=helptext)
        if name == "trust":
            action.add_argument("pem", help="PEM public key file")
        if name == "revoke":
            action.add_argument("key_id", help="the id `lifecycle keys list` shows")
        action.add_argument("--keyring", help="keyring folder (default $LIFECYCLE_TRUSTED_KEYS)")
        action.set_defaults(handler=handler)
