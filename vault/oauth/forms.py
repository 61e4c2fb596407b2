"""Form tokens for the server-rendered pages (consent page, developer page): CSRF protection
without a session library.

A form token is ``nonce | expiry`` plus a keyed BLAKE2b MAC over a purpose, that nonce and expiry,
a *binding* (a random value the browser holds in a ``SameSite=Strict``, ``HttpOnly`` cookie) and
the request it protects (for the consent page: a digest of the exact authorization request).

Properties: a token forged without the server's form key, replayed from another browser (other
cookie), moved to another authorization request, or presented after its expiry fails
:func:`verify`; the consent page additionally records each nonce as used, so a token works once.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nacl.encoding
import nacl.hash

_NONCE = 16
_HEAD = struct.Struct(">16sQ")
BINDING_BYTES = 24


@dataclass(frozen=True)
class VerifiedForm:
    nonce: str
    expires_at: datetime


def new_binding() -> str:
    return secrets.token_urlsafe(BINDING_BYTES)


def valid_binding(value: str | None) -> bool:
    return value is not None and 20 <= len(value) <= 64 and value.isascii() and value.isprintable()


def request_digest(params: dict[str, str]) -> bytes:
    """The digest of an authorization request's parameters (order-independent)."""
    text = json.dumps(sorted(params.items()), separators=(",", ":")).encode("utf-8")
    digest: bytes = nacl.hash.blake2b(
        text, digest_size=32, person=b"cv-authz-request", encoder=nacl.encoding.RawEncoder
    )
    return digest


def _mac(key: bytes, purpose: str, head: bytes, binding: str, bound_to: bytes) -> bytes:
    message = b"\0".join([purpose.encode("ascii"), head, binding.encode("ascii"), bound_to])
    mac: bytes = nacl.hash.blake2b(
        message, key=key, digest_size=32, person=b"cv-oauth-form", encoder=nacl.encoding.RawEncoder
    )
    return mac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, purpose: str, binding: str, bound_to: bytes, ttl: int, now: datetime) -> str:
    expires = int((now + timedelta(seconds=ttl)).timestamp())
    head = _HEAD.pack(secrets.token_bytes(_NONCE), expires)
    return _b64(head) + "." + _b64(_mac(key, purpose, head, binding, bound_to))


def verify(
    key: bytes, token: str | None, purpose: str, binding: str | None, bound_to: bytes, now: datetime
) -> VerifiedForm | None:
    if binding is None or not valid_binding(binding):
        return None
    if not token or len(token) > 200 or "." not in token:
        return None
    head_text, _, mac_text = token.partition(".")
    try:
        head, mac = _unb64(head_text), _unb64(mac_text)
    except ValueError:
        return None
    if len(head) != _HEAD.size:
        return None
    if not hmac.compare_digest(mac, _mac(key, purpose, head, binding, bound_to)):
        return None
    nonce, expires = _HEAD.unpack(head)
    expires_at = datetime.fromtimestamp(expires, UTC)
    if expires_at <= now:
        return None
    return VerifiedForm(nonce.hex(), expires_at)
