"""Opaque bearer tokens that also carry the key to the citizen's unlocked root secret.

A token is ``cv_`` + 43 characters of base64url (32 random bytes). From its secret we derive, with
BLAKE2b under two different personalisations, a lookup digest (stored) and a wrapping key (never
stored). The vault keeps the citizen's root secret for the life of a session encrypted under that
wrapping key.

Property: the database holds only digests and wrapped blobs, so a database thief can neither use a
token nor open a session's root secret; the holder of a live token can do both.
"""

from __future__ import annotations

import base64
import secrets

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.secret

PREFIX = "cv_"
_SECRET_BYTES = 32


class TokenFormatError(ValueError):
    pass


def new_token() -> str:
    raw = secrets.token_bytes(_SECRET_BYTES)
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _secret(token: str) -> bytes:
    if not token.startswith(PREFIX) or len(token) != len(PREFIX) + 43:
        raise TokenFormatError("not a Civic Vault token")
    try:
        return base64.urlsafe_b64decode(token[len(PREFIX) :] + "=")
    except ValueError as exc:
        raise TokenFormatError("not a Civic Vault token") from exc


def token_digest(token: str) -> str:
    """The value stored and looked up for ``token`` (hex)."""
    digest: bytes = nacl.hash.blake2b(
        _secret(token), digest_size=32, person=b"cv-token-lookup", encoder=nacl.encoding.RawEncoder
    )
    return digest.hex()


def _wrapping_key(token: str) -> bytes:
    key: bytes = nacl.hash.blake2b(
        _secret(token), digest_size=32, person=b"cv-token-wrapkey", encoder=nacl.encoding.RawEncoder
    )
    return key


def wrap_for_token(token: str, secret: bytes) -> bytes:
    return bytes(nacl.secret.Aead(_wrapping_key(token)).encrypt(secret))


def unwrap_for_token(token: str, blob: bytes) -> bytes:
    try:
        return bytes(nacl.secret.Aead(_wrapping_key(token)).decrypt(blob))
    except nacl.exceptions.CryptoError as exc:
        raise TokenFormatError("token does not open its session key") from exc
