"""Encrypting one chunk: XChaCha20-Poly1305 under a chunk key, the key sealed to the stream key.

Property: the ciphertext reveals nothing but its length; the chunk opens only for a holder of the
stream's private key; flipping any byte of the ciphertext, the sealed chunk key or the associated data
(citizen, stream, sequence, schema version) makes :func:`decrypt_chunk` raise
:class:`ChunkIntegrityError`.

A chunk key is random and used only for chunks of the one stream whose key it is sealed to: one chunk
(:func:`encrypt_chunk`), or a writer's consecutive chunks (:func:`encrypt_chunk_under`, with keys from
:class:`vault.chunk_write_keys.WriterChunkKeys`). Each encryption draws a fresh random 192-bit nonce
(XChaCha20), so reusing a key for many chunks never reuses a nonce in practice, and the associated
data differs per chunk (its sequence number), so no chunk can stand in for another.
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


@dataclass(frozen=True)
class ChunkKey:
    """A random chunk key and the same key sealed to one stream's public key."""

    key: bytes
    sealed_key: bytes


def new_chunk_key(stream_public_key: bytes) -> ChunkKey:
    key = nacl.utils.random(nacl.secret.Aead.KEY_SIZE)
    return ChunkKey(key=key, sealed_key=seal_to(stream_public_key, key))


def encrypt_chunk_under(
    plaintext: bytes, associated_data: bytes, chunk_key: ChunkKey
) -> EncryptedChunk:
    """Encrypt one chunk under ``chunk_key`` (a fresh random nonce each time)."""
    ciphertext = bytes(nacl.secret.Aead(chunk_key.key).encrypt(plaintext, aad=associated_data))
    return EncryptedChunk(ciphertext=ciphertext, sealed_key=chunk_key.sealed_key)


def encrypt_chunk(
    plaintext: bytes, associated_data: bytes, stream_public_key: bytes
) -> EncryptedChunk:
    """Encrypt one chunk under a key of its own."""
    return encrypt_chunk_under(plaintext, associated_data, new_chunk_key(stream_public_key))


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
