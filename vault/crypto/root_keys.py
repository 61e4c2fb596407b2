"""A citizen's root key pair: X25519 to open what is sealed to them, Ed25519 to sign consents.

Property: both private halves come from one 64-byte root secret that the vault only ever stores
wrapped (under the passphrase and under the recovery code); the public halves are stored in clear.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.public
import nacl.signing
import nacl.utils

ROOT_SECRET_BYTES = 64


@dataclass(frozen=True)
class RootKeys:
    box_key: nacl.public.PrivateKey
    signing_key: nacl.signing.SigningKey

    @classmethod
    def generate(cls) -> RootKeys:
        return cls.from_secret(nacl.utils.random(ROOT_SECRET_BYTES))

    @classmethod
    def from_secret(cls, secret: bytes) -> RootKeys:
        if len(secret) != ROOT_SECRET_BYTES:
            raise ValueError("root secret must be 64 bytes")
        return cls(nacl.public.PrivateKey(secret[:32]), nacl.signing.SigningKey(secret[32:]))

    @property
    def secret(self) -> bytes:
        return bytes(self.box_key) + bytes(self.signing_key)

    @property
    def box_public(self) -> bytes:
        return bytes(self.box_key.public_key)

    @property
    def verify_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)
