"""Encrypting one chunk: XChaCha20-Poly1305 under a fresh chunk key, the key sealed to the stream key.

Property: the ciphertext reveals nothing but its length; the chunk opens only for a holder of the
stream's private key; flipping any byte of the ciphertext, the sealed chunk key or the associated data
(citizen, stream, sequence, schema version) makes :func:`decrypt_chunk` raise
:class:`ChunkIntegrityError`. A fresh random key per chunk means nonce reuse cannot happen across chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.utils

from vault.crypto.sealing import SealedOpenError, open_sealed, seal_to


class ChunkIntegrityError(Exception):
    """A chunk, its sealed key or its associated data was altered, or the wrong key was used."""


@dataclass(frozen=True)
class EncryptedChunk:
    ciphertext: bytes  # nonce || ciphertext || tag, as PyNaCl's Aead lays it out
    sealed_key: bytes


def encrypt_chunk(
    plaintext: bytes, associated_data: bytes, stream_public_key: bytes
) -> EncryptedChunk:
    chunk_key = nacl.utils.random(nacl.secret.Aead.KEY_SIZE)
    box = nacl.secret.Aead(chunk_key)
    ciphertext = bytes(box.encrypt(plaintext, aad=associated_data))
    return EncryptedChunk(ciphertext=ciphertext, sealed_key=seal_to(stream_public_key, chunk_key))


def open_chunk_key(stream_private_key: nacl.public.PrivateKey, sealed_key: bytes) -> bytes:
    try:
        return open_sealed(stream_private_key, sealed_key)
    except SealedOpenError as exc:
        raise ChunkIntegrityError("chunk key does not open with this stream key") from exc


def decrypt_with_key(chunk_key: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    try:
        return bytes(nacl.secret.Aead(chunk_key).decrypt(ciphertext, aad=associated_data))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise ChunkIntegrityError("chunk failed its integrity check") from exc


def decrypt_chunk(
    stream_private_key: nacl.public.PrivateKey,
    chunk: EncryptedChunk,
    associated_data: bytes,
) -> bytes:
    chunk_key = open_chunk_key(stream_private_key, chunk.sealed_key)
    return decrypt_with_key(chunk_key, chunk.ciphertext, associated_data)
