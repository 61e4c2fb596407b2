"""The vault's own keys: files under ``$CIVIC_DATA_DIR/keys`` with mode 0600, made on first run.

They never enter the database, so a copy of the database alone opens nothing that is sealed to them.
* ``aggregation.x25519``: the aggregation service's key; stream keys are sealed to it by consent grants.
* ``app-access.x25519``: the key through which third-party apps read under a consent.
* ``audit.ed25519``: signs the head of every citizen's audit chain, so a dropped tail is detected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nacl.public
import nacl.signing
import nacl.utils

_KEY_BYTES = 32


class ServiceKeyError(RuntimeError):
    """A key file is unreadable, has the wrong size, or is readable by others."""


def load_or_create_key_file(path: Path) -> bytes:
    """Return the 32 secret bytes in ``path``, creating the file (mode 0600) if it does not exist.

    Several processes may start at once (``CIVIC_WORKERS``): a new key is written whole to a file
    of its own, then linked to ``path`` in one step that fails if ``path`` exists, so every process
    reads the same complete key and none ever sees a partly written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if not path.exists():
        _create_whole(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ServiceKeyError(f"{path} is readable by other users (mode {mode:o}); chmod 600 it")
    data = path.read_bytes()
    if len(data) != _KEY_BYTES:
        raise ServiceKeyError(f"{path} holds {len(data)} bytes, expected {_KEY_BYTES}")
    return data


def _create_whole(path: Path) -> None:
    draft = path.with_name(f".{path.name}.{os.getpid()}.{nacl.utils.random(6).hex()}.new")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(nacl.utils.random(_KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(draft, path)  # atomic; another process may have won the race
        except FileExistsError:
            pass
        else:
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    finally:
        draft.unlink(missing_ok=True)


@dataclass(frozen=True)
class ServiceKeys:
    aggregation: nacl.public.PrivateKey
    app_access: nacl.public.PrivateKey
    audit_signing: nacl.signing.SigningKey

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> ServiceKeys:
        return cls(
            aggregation=nacl.public.PrivateKey(
                load_or_create_key_file(keys_dir / "aggregation.x25519")
            ),
            app_access=nacl.public.PrivateKey(
                load_or_create_key_file(keys_dir / "app-access.x25519")
            ),
            audit_signing=nacl.signing.SigningKey(
                load_or_create_key_file(keys_dir / "audit.ed25519")
            ),
        )

    @property
    def audit_verify_key(self) -> bytes:
        return bytes(self.audit_signing.verify_key)
