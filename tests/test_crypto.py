"""Properties of the crypto wrappers (PyNaCl does the maths; we test how we use it)."""

from __future__ import annotations

import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.crypto import token_secrets
from vault.crypto.chunk_cipher import (
    ChunkIntegrityError,
    EncryptedChunk,
    decrypt_chunk,
    encrypt_chunk,
)
from vault.crypto.passphrase_wrap import KdfCost, WrongPassphrase, unwrap_secret, wrap_secret
from vault.crypto.recovery_code import new_recovery_code, normalise_recovery_code
from vault.crypto.root_keys import RootKeys
from vault.crypto.sealing import SealedOpenError, open_sealed, seal_to

MIN = KdfCost.profile("min")


def flip(data: bytes, index: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@settings(max_examples=25, deadline=None)
@given(secret=st.binary(min_size=1, max_size=128), passphrase=st.text(min_size=1, max_size=40))
def test_wrap_round_trip(secret: bytes, passphrase: str) -> None:
    blob = wrap_secret(secret, passphrase, MIN)
    assert unwrap_secret(blob, passphrase) == secret
    assert secret not in blob or len(secret) < 4


@settings(max_examples=25, deadline=None)
@given(index=st.integers(min_value=0, max_value=10_000))
def test_any_flipped_byte_of_a_wrapped_secret_is_refused(index: int) -> None:
    blob = wrap_secret(b"s" * 64, "correct passphrase", MIN)
    with pytest.raises(WrongPassphrase):
        unwrap_secret(flip(blob, index), "correct passphrase")


def test_wrong_passphrase_is_refused() -> None:
    blob = wrap_secret(b"s" * 64, "correct passphrase", MIN)
    with pytest.raises(WrongPassphrase):
        unwrap_secret(blob, "Correct passphrase")


def test_cost_is_stored_with_the_blob() -> None:
    blob = wrap_secret(b"k" * 64, "passphrase-1", KdfCost.profile("interactive"))
    # Unwrapping needs no knowledge of the configured cost.
    assert unwrap_secret(blob, "passphrase-1") == b"k" * 64


def test_an_inflated_cost_header_is_refused_before_any_work() -> None:
    blob = bytearray(wrap_secret(b"k" * 64, "passphrase-1", MIN))
    blob[1:9] = (2**40).to_bytes(8, "big")  # opslimit far above "sensitive"
    with pytest.raises(WrongPassphrase, match="out-of-range"):
        unwrap_secret(bytes(blob), "passphrase-1")


def test_root_keys_round_trip_through_their_secret() -> None:
    root = RootKeys.generate()
    again = RootKeys.from_secret(root.secret)
    assert again.box_public == root.box_public and again.verify_key == root.verify_key


def test_sealing_opens_only_with_the_right_key() -> None:
    alice, bob = nacl.public.PrivateKey.generate(), nacl.public.PrivateKey.generate()
    sealed = seal_to(bytes(alice.public_key), b"stream key")
    assert open_sealed(alice, sealed) == b"stream key"
    with pytest.raises(SealedOpenError):
        open_sealed(bob, sealed)


@settings(max_examples=50, deadline=None)
@given(
    plaintext=st.binary(min_size=1, max_size=512),
    part=st.sampled_from(["ciphertext", "sealed_key", "ad"]),
    index=st.integers(min_value=0, max_value=100_000),
)
def test_flipping_any_byte_of_a_chunk_fails_its_integrity_check(
    plaintext: bytes, part: str, index: int
) -> None:
    key = nacl.public.PrivateKey.generate()
    ad = b'{"chunk":{"citizen":"c","seq":1}}'
    chunk = encrypt_chunk(plaintext, ad, bytes(key.public_key))
    assert decrypt_chunk(key, chunk, ad) == plaintext
    if part == "ciphertext":
        chunk = EncryptedChunk(flip(chunk.ciphertext, index), chunk.sealed_key)
    elif part == "sealed_key":
        chunk = EncryptedChunk(chunk.ciphertext, flip(chunk.sealed_key, index))
    else:
        ad = flip(ad, index)
    with pytest.raises(ChunkIntegrityError):
        decrypt_chunk(key, chunk, ad)


def test_a_writer_with_only_the_public_key_cannot_read_back() -> None:
    key = nacl.public.PrivateKey.generate()
    other = nacl.public.PrivateKey.generate()
    chunk = encrypt_chunk(b"reading", b"ad", bytes(key.public_key))
    with pytest.raises(ChunkIntegrityError):
        decrypt_chunk(other, chunk, b"ad")


def test_token_digest_and_wrapping_key_are_independent() -> None:
    token = token_secrets.new_token()
    digest = token_secrets.token_digest(token)
    blob = token_secrets.wrap_for_token(token, b"r" * 64)
    assert token_secrets.unwrap_for_token(token, blob) == b"r" * 64
    assert digest not in blob.hex()
    with pytest.raises(token_secrets.TokenFormatError):
        token_secrets.unwrap_for_token(token_secrets.new_token(), blob)
    with pytest.raises(token_secrets.TokenFormatError):
        token_secrets.token_digest("Bearer nonsense")


@given(code=st.just(None))
def test_recovery_codes_normalise_as_typed(code: None) -> None:
    generated = new_recovery_code()
    typed = generated.lower().replace("-", " ")
    assert normalise_recovery_code(typed) == generated
    assert len(generated.replace("-", "")) == 32
