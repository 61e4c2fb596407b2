"""Wrapping a secret under a passphrase (Argon2id + XSalsa20-Poly1305 SecretBox, via PyNaCl).

Property: without the passphrase, a wrapped blob reveals nothing about the secret beyond its length,
and any change to the blob (parameters, salt, nonce or ciphertext) makes unwrapping fail. The Argon2id
cost is stored in the blob, so changing the configured cost never locks anyone out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

_VERSION = 1
_HEADER = struct.Struct(">BQQ")  # version, opslimit, memlimit
_SALT_BYTES = nacl.pwhash.argon2id.SALTBYTES


@dataclass(frozen=True)
class KdfCost:
    opslimit: int
    memlimit: int

    @classmethod
    def profile(cls, name: str) -> KdfCost:
        a = nacl.pwhash.argon2id
        table = {
            "min": cls(a.OPSLIMIT_MIN, a.MEMLIMIT_MIN),
            "interactive": cls(a.OPSLIMIT_INTERACTIVE, a.MEMLIMIT_INTERACTIVE),
            "moderate": cls(a.OPSLIMIT_MODERATE, a.MEMLIMIT_MODERATE),
            "sensitive": cls(a.OPSLIMIT_SENSITIVE, a.MEMLIMIT_SENSITIVE),
        }
        return table[name]


class WrongPassphrase(Exception):
    """The passphrase does not open this blob (or the blob was altered)."""


def _derive(passphrase: str, salt: bytes, cost: KdfCost) -> bytes:
    key: bytes = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase.encode("utf-8"),
        salt,
        opslimit=cost.opslimit,
        memlimit=cost.memlimit,
    )
    return key


def wrap_secret(secret: bytes, passphrase: str, cost: KdfCost) -> bytes:
    """Encrypt ``secret`` under a key derived from ``passphrase``; the header is authenticated."""
    salt = nacl.utils.random(_SALT_BYTES)
    header = _HEADER.pack(_VERSION, cost.opslimit, cost.memlimit) + salt
    box = nacl.secret.Aead(_derive(passphrase, salt, cost))
    return header + bytes(box.encrypt(secret, aad=header))


def unwrap_secret(blob: bytes, passphrase: str) -> bytes:
    """Return the secret, or raise :class:`WrongPassphrase`."""
    head_len = _HEADER.size + _SALT_BYTES
    if len(blob) <= head_len:
        raise WrongPassphrase("wrapped secret is truncated")
    version, opslimit, memlimit = _HEADER.unpack_from(blob)
    if version != _VERSION:
        raise WrongPassphrase(f"unknown wrapping version {version}")
    ceiling = KdfCost.profile("sensitive")
    if opslimit > ceiling.opslimit or memlimit > ceiling.memlimit:
        # An altered header must not make us burn minutes of CPU or gigabytes of memory.
        raise WrongPassphrase("wrapped secret asks for an out-of-range key-derivation cost")
    header, body = blob[:head_len], blob[head_len:]
    salt = header[_HEADER.size :]
    try:
        key = _derive(passphrase, salt, KdfCost(opslimit, memlimit))
        return bytes(nacl.secret.Aead(key).decrypt(body, aad=header))
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise WrongPassphrase("passphrase does not open this key") from exc
