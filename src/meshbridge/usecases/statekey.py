"""The state key (KEK): where it comes from, and proof that it opens this store.

Private keys in the state store are sealed under a 32-byte key that never enters the store:
``MESHBRIDGE_STATE_KEY`` (base64 or hex) or, for a SQLite file store, the 0600 file
``<state file>.key`` created on first use. A sealed constant row (``pki.kek/check``) tells a wrong
key from a damaged row, so a wrong or missing key is a clear SealingError — never a fresh key,
never a silently regenerated CA. The row is written when the key file is created, so a key file
and its store are known to belong together.

A store with no PKI beside a key file that does not open it is a store that was lost, emptied
or replaced (the key file of its first life is still there): :func:`refuse_lost_store` stops a
render from starting a new root of trust there unasked. ``pki init`` and ``pki import`` are the
explicit ways to start one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from meshbridge.errors import SealingError, StateError
from meshbridge.keyfiles import make_key_dirs, open_key_file
from meshbridge.pki.sealing import Sealer, new_key_text, parse_key_text, row_aad
from meshbridge.store.base import Store

__all__ = ["STATE_KEY_ENV", "key_file_path", "load_sealer", "pair_key_file", "refuse_lost_store"]

STATE_KEY_ENV = "MESHBRIDGE_STATE_KEY"
KEY_FILE_SUFFIX = ".key"

# Store rows of the PKI that hold sealed private keys (see meshbridge.usecases.pki).
KIND_KEK = "pki.kek"
KIND_ROOT = "pki.root"
KIND_INTERMEDIATE = "pki.intermediate"
KIND_INGRESS_CA = "pki.ingress-ca"
KIND_SERVER = "pki.server"
SEALED_KINDS = (KIND_KEK, KIND_ROOT, KIND_INTERMEDIATE, KIND_INGRESS_CA, KIND_SERVER)
CHECK_NAME = "check"
CHECK_TEXT = b"meshbridge state key check v1"


def key_file_path(state_path: str | None) -> Path | None:
    """``<state file>.key`` for a SQLite file store; None for database URLs and memory."""
    if not state_path:
        return None
    location = state_path
    if location.startswith("sqlite:///"):
        location = location[len("sqlite:///") :]
    elif "://" in location:
        return None
    if not location or location == ":memory:":
        return None
    return Path(location + KEY_FILE_SUFFIX).expanduser()


def _holds_sealed(store: Store) -> bool:
    return any(store.list_blobs(kind) for kind in SEALED_KINDS)


def _read_key_file(path: Path) -> Sealer:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SealingError(
                f"the state key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise SealingError(f"the state key file {path} is not base64 or hex text") from None
    except OSError as exc:
        raise SealingError(f"cannot read the state key file {path}: {exc.strerror}") from None
    return Sealer(parse_key_text(text, f"the state key file {path}"), f"key file {path}")


def _create_key_file(path: Path) -> Sealer:
    text = new_key_text()
    try:
        make_key_dirs(path.parent)
        fd = open_key_file(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # another meshbridge created it first: use theirs
        return _read_key_file(path)
    except OSError as exc:
        raise SealingError(f"cannot create the state key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text + "\n")
    return Sealer(parse_key_text(text, str(path)), f"key file {path}")


def load_sealer(state_path: str | None, store: Store) -> Sealer:
    """The KEK sealing this store's private keys.

    ``MESHBRIDGE_STATE_KEY`` (32 bytes as base64 or hex) wins; otherwise the 0600 file
    ``<state path>.key``, created on first use only while the store holds no sealed key yet.
    A key that does not open the store, or a missing key file for a store that has sealed keys,
    is a SealingError: never a new key, never a silently regenerated CA.
    """
    path = key_file_path(state_path)
    env = os.environ.get(STATE_KEY_ENV, "").strip()
    if env:
        sealer = Sealer(parse_key_text(env, STATE_KEY_ENV), STATE_KEY_ENV)
    elif path is None:
        raise SealingError(
            f"this state store has no key file beside it: set {STATE_KEY_ENV} to a 32-byte key "
            "written as base64 or hex (create one with: head -c 32 /dev/urandom | base64)"
        )
    elif path.exists():
        sealer = _read_key_file(path)
    elif _holds_sealed(store):
        raise SealingError(
            f"the state store holds sealed private keys but its key file {path} is missing; "
            f"restore that file (mode 0600) or set {STATE_KEY_ENV} to the key it held "
            "(a new key would not open the mesh's CA)"
        )
    else:
        sealer = _create_key_file(path)
        # the store's half of the pair: this key file and this store belong together
        store.put_blob(KIND_KEK, CHECK_NAME, sealer.seal(CHECK_TEXT, row_aad(KIND_KEK, CHECK_NAME)))
    _verify(sealer, store, path)
    return sealer


def pair_key_file(state_path: str | None, store: Store) -> None:
    """Create the key file and record it in the store now, in a transaction of its own, when a
    render is about to need one.

    Created by a render, the store's record of it would be undone with a dry run's rollback or a
    failed render's, leaving a key file the store does not know: what
    :func:`refuse_lost_store` takes for a lost store. Call before a render's transaction.
    """
    path = key_file_path(state_path)
    if path is None or path.exists() or os.environ.get(STATE_KEY_ENV, "").strip():
        return
    with store.transaction():
        if not _holds_sealed(store):  # else the render reports the missing key file
            load_sealer(state_path, store)


def refuse_lost_store(state_path: str | None, store: Store) -> None:
    """StateError when the store holds no PKI (not even the key check) while its key file exists.

    That is a store whose first life is gone (deleted, emptied, swapped for a new one) next to
    the key file it left behind: issuing now would start a new root of trust, which clusters
    and external callers of the old one do not trust. Called where a PKI would start implicitly
    (render, apply, the server); ``pki init`` and ``pki import`` start one explicitly.
    """
    path = key_file_path(state_path)
    if path is None or not path.exists() or _holds_sealed(store):
        return
    raise StateError(
        f"the state store {state_path} holds no PKI, but the key file {path} beside it exists: "
        "the store it was made for looks lost, emptied or replaced, and going on would start a "
        "new root of trust. Restore the store (with this key file) from a backup; or bring the "
        "mesh's root back with 'meshbridge pki import --cert ROOT.pem --key ROOT-KEY.pem' (see "
        '"Recovering a lost store" in docs/pki.md); or, if this store is new (or an earlier '
        "first run stopped half-way), start its PKI on purpose with 'meshbridge pki init'"
    )


def _verify(sealer: Sealer, store: Store, path: Path | None) -> None:
    check = store.get_blob(KIND_KEK, CHECK_NAME)
    if check is None:
        return
    try:
        ok = sealer.open(check, row_aad(KIND_KEK, CHECK_NAME)) == CHECK_TEXT
    except SealingError:
        ok = False
    if not ok:
        where = f", or restore the key file {path}" if path is not None else ""
        raise SealingError(
            f"the state key ({sealer.origin}) does not open this store; set {STATE_KEY_ENV} to "
            f"the key used when the store's PKI was created{where}"
        )
