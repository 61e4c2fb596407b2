"""Signing and verifying consent terms and consent events with the citizen's Ed25519 key.

The signed message is exactly ``canonical_json(terms.signable_dict())`` (for an event,
``canonical_json(event.signable_dict())``); the signature is detached (Ed25519, libsodium through
PyNaCl) and travels with the public key and a key id (the first 16 hex digits of the SHA-256 of the
32-byte public key).

Security properties (each is checked by ``tests/test_consent_terms.py``):

* **Integrity.** Changing any field of the signed body (any purpose, field, limit, time, URL...)
  changes its canonical bytes, so the signature no longer verifies: nobody can quietly widen terms.
  The canonical encoding is deterministic, so equal terms always give equal bytes.
* **Authenticity, against the verifier's own key.** :func:`verify_signed_terms` compares the key in
  the envelope with the key the *caller* expects for the subject (looked up in the caller's own
  registry). An envelope that carries another key, however well it verifies, is refused
  (``wrong_key``).
* **Domain separation.** Terms and events carry different ``schema`` IRIs inside the signed JSON,
  so a signature over one can never be presented as a signature over the other.
* **Validity and status.** Verification also refuses terms outside their validity window at the
  caller's ``now`` (``not_yet_valid``, ``expired``) and terms whose history says ``withdrawn`` or
  ``superseded`` by a later version. Every event that can change the status must itself verify
  under the same key (an ``expired`` event may be unsigned: it can only restrict).
* **What this does not provide.** Times are the citizen's and the vault's clocks, not a trusted
  timestamp; withdrawal and supersession are only seen if the caller passes the history, so the
  vault must keep events append-only (its audit chain) and pass them all.

Withdrawing is as easy as giving (GDPR Art. 7(3)): :func:`give` and :func:`withdraw` are one call
each, with the same key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import nacl.exceptions
import nacl.signing

from consent.errors import SignatureInvalid
from consent.terms import (
    ConsentEvent,
    ConsentStatus,
    ConsentTerms,
    FrozenModel,
    as_utc,
    consent_status,
    iso_utc,
)

_PUBLIC_KEY_BYTES = 32
_SIGNATURE_BYTES = 64


def key_id_for(public_key: bytes) -> str:
    """The key id: the first 16 hex digits of SHA-256 of the 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SignatureInvalid("malformed", f"the {what} is not base64") from None
    if len(raw) != size:
        raise SignatureInvalid("malformed", f"the {what} must be {size} bytes")
    return raw


class SignedTerms(FrozenModel):
    """Terms with the citizen's detached signature, public key and key id (all base64 / hex)."""

    terms: ConsentTerms
    signature: str
    public_key: str
    key_id: str

    def signed_message(self) -> bytes:
        """The exact bytes the signature covers."""
        return self.terms.signable_bytes


class SignedEvent(FrozenModel):
    """A consent event with the citizen's signature (``None`` only for ``expired``)."""

    event: ConsentEvent
    signature: str | None = None
    public_key: str | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class VerifiedTerms:
    """Terms whose signature, key, validity window and status were checked at ``verified_at``.

    Only :func:`verify_signed_terms` makes these; ``status`` is ``given`` or ``renewed``.
    """

    terms: ConsentTerms
    status: ConsentStatus
    key_id: str
    verified_at: datetime


def sign_terms(terms: ConsentTerms, signing_key: nacl.signing.SigningKey) -> SignedTerms:
    """Sign ``canonical_json(terms.signable_dict())`` with the citizen's key (detached)."""
    public = bytes(signing_key.verify_key)
    signature = signing_key.sign(terms.signable_bytes).signature
    return SignedTerms(
        terms=terms,
        signature=_b64(bytes(signature)),
        public_key=_b64(public),
        key_id=key_id_for(public),
    )


def sign_event(event: ConsentEvent, signing_key: nacl.signing.SigningKey) -> SignedEvent:
    """Sign ``canonical_json(event.signable_dict())`` with the citizen's key (detached)."""
    public = bytes(signing_key.verify_key)
    signature = signing_key.sign(event.signable_bytes).signature
    return SignedEvent(
        event=event,
        signature=_b64(bytes(signature)),
        public_key=_b64(public),
        key_id=key_id_for(public),
    )


def give(
    terms: ConsentTerms, signing_key: nacl.signing.SigningKey, at: datetime
) -> tuple[SignedTerms, SignedEvent]:
    """Give consent: the signed terms and the signed ``given`` event recording when."""
    return sign_terms(terms, signing_key), sign_event(
        ConsentEvent.for_terms(terms, "given", at), signing_key
    )


def withdraw(
    terms: ConsentTerms, signing_key: nacl.signing.SigningKey, at: datetime
) -> SignedEvent:
    """Withdraw consent: one call, the same key as giving (GDPR Art. 7(3))."""
    return sign_event(ConsentEvent.for_terms(terms, "withdrawn", at), signing_key)


def renew(terms: ConsentTerms, signing_key: nacl.signing.SigningKey, at: datetime) -> SignedEvent:
    """Re-affirm consent to exactly these terms (DPV: RenewedConsentGiven)."""
    return sign_event(ConsentEvent.for_terms(terms, "renewed", at), signing_key)


class SignatureMemo:
    """Remembers (public key, signature, message) triples that verified, by their SHA-256, so that
    checking the same stored consent again costs a hash instead of an Ed25519 verification.

    Sound because verification is a pure function of the triple: a memo hit means these exact
    bytes verified before. Only successes are kept; at ``max_entries`` the memo starts afresh.
    Thread-safe enough for its use (a lost insert only costs a verification)."""

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self._max = max_entries
        self._seen: set[bytes] = set()

    @staticmethod
    def key(public: bytes, signature: bytes, message: bytes) -> bytes:
        return hashlib.sha256(public + signature + message).digest()

    def __contains__(self, key: bytes) -> bool:
        return key in self._seen

    def add(self, key: bytes) -> None:
        if len(self._seen) >= self._max:
            self._seen = set()
        self._seen.add(key)

    def verify_ahead(self, triples: Iterable[tuple[bytes, bytes, bytes]]) -> None:
        """Verify each (public key, signature, message) and remember those that verify, so that
        the checks that follow (:func:`verify_signatures`, with this memo) are memo hits.

        Decides nothing: a triple that does not verify is left out and is verified (and
        refused) again by the check itself, which also does every other check (the expected
        key, the key id) as before. Safe to call from several threads at once (libsodium runs
        without the GIL), which is what it is for: a consent gate verifies the next consents'
        signatures on other cores while it reads and decides the current ones."""
        for public, signature, message in triples:
            if len(public) != _PUBLIC_KEY_BYTES or len(signature) != _SIGNATURE_BYTES:
                continue
            seen = self.key(public, signature, message)
            if seen in self:  # verified before (a warm service): no Ed25519 again
                continue
            try:
                nacl.signing.VerifyKey(public).verify(message, signature)
            except (nacl.exceptions.CryptoError, ValueError, TypeError):
                continue
            self.add(seen)


def _check_signature(
    message: bytes,
    signature_b64: str | None,
    public_key_b64: str | None,
    key_id: str | None,
    expected_verify_key: bytes,
    memo: SignatureMemo | None = None,
) -> str:
    """Verify a detached signature against the expected key; returns the key id."""
    if signature_b64 is None or public_key_b64 is None or key_id is None:
        raise SignatureInvalid("malformed", "the signature, public key or key id is missing")
    public = _unb64(public_key_b64, _PUBLIC_KEY_BYTES, "public key")
    signature = _unb64(signature_b64, _SIGNATURE_BYTES, "signature")
    if len(expected_verify_key) != _PUBLIC_KEY_BYTES or not hmac.compare_digest(
        public, expected_verify_key
    ):
        raise SignatureInvalid("wrong_key", "signed with a key other than the subject's key")
    if not hmac.compare_digest(key_id, key_id_for(public)):
        raise SignatureInvalid("bad_key_id", "the key id does not match the public key")
    seen = None if memo is None else memo.key(public, signature, message)
    if seen is not None and memo is not None and seen in memo:
        return key_id
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        raise SignatureInvalid("bad_signature", "the signature does not verify") from None
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise SignatureInvalid("malformed", "the key or signature cannot be used") from None
    if seen is not None and memo is not None:
        memo.add(seen)
    return key_id


def verify_event(
    signed: SignedEvent, expected_verify_key: bytes, memo: SignatureMemo | None = None
) -> ConsentEvent:
    """The event, once its signature verifies under ``expected_verify_key``.

    An unsigned event is accepted only if it is ``expired`` (derived from the clock; it can only
    restrict). Raises :class:`~consent.errors.SignatureInvalid` otherwise.
    """
    if signed.signature is None and signed.event.kind == "expired":
        return signed.event
    _check_signature(
        signed.event.signable_bytes,
        signed.signature,
        signed.public_key,
        signed.key_id,
        expected_verify_key,
        memo,
    )
    return signed.event


@dataclass(frozen=True)
class SignedHistory:
    """Terms and their history whose signatures all verified under one key: everything
    :func:`verify_signed_terms` checks that does not depend on the time. Only
    :func:`verify_signatures` makes these; :func:`judge_at` finishes the check for a moment."""

    terms: ConsentTerms
    key_id: str
    history: tuple[ConsentEvent, ...]


def verify_signatures(
    signed: SignedTerms,
    expected_verify_key: bytes,
    events: Iterable[SignedEvent] = (),
    memo: SignatureMemo | None = None,
) -> SignedHistory:
    """The first half of :func:`verify_signed_terms`: the key, the key id and the Ed25519
    signature of the terms, then every event about them (same terms id) under the same key.
    A pure function of its arguments (``memo`` only skips repeating a verification). Raises
    :class:`~consent.errors.SignatureInvalid` with a ``reason``."""
    key_id = _check_signature(
        signed.signed_message(),
        signed.signature,
        signed.public_key,
        signed.key_id,
        expected_verify_key,
        memo,
    )
    terms = signed.terms
    history: list[ConsentEvent] = []
    for item in events:
        if item.event.terms_id != terms.id:
            continue
        try:
            history.append(verify_event(item, expected_verify_key, memo))
        except SignatureInvalid as exc:
            raise SignatureInvalid(
                "bad_event",
                f"the {item.event.kind} event of {iso_utc(item.event.at)} does not verify "
                f"({exc.reason})",
            ) from None
    return SignedHistory(terms=terms, key_id=key_id, history=tuple(history))


def judge_at(signed: SignedHistory, now: datetime) -> VerifiedTerms:
    """The second half of :func:`verify_signed_terms`: ``now`` inside the validity window and the
    status derived from the verified history (:func:`consent.terms.consent_status`) ``given`` or
    ``renewed``. Raises :class:`~consent.errors.SignatureInvalid` with a ``reason``."""
    now = as_utc(now)
    terms = signed.terms
    if now < terms.validity.not_before:
        raise SignatureInvalid(
            "not_yet_valid", f"the terms apply from {iso_utc(terms.validity.not_before)}"
        )
    status = consent_status(terms, list(signed.history), now)
    if status == "expired":
        raise SignatureInvalid("expired", f"the terms ended at {iso_utc(terms.validity.not_after)}")
    if status in ("withdrawn", "superseded"):
        raise SignatureInvalid(status, f"the citizen's history says this consent is {status}")
    return VerifiedTerms(terms=terms, status=status, key_id=signed.key_id, verified_at=now)


def verify_signed_terms(
    signed: SignedTerms,
    expected_verify_key: bytes,
    now: datetime,
    events: Iterable[SignedEvent] = (),
    memo: SignatureMemo | None = None,
) -> VerifiedTerms:
    """Check everything a recipient must check before relying on signed terms.

    In order: the public key is ``expected_verify_key`` (the subject's key from the caller's own
    registry), the key id matches it, the Ed25519 signature verifies over
    ``canonical_json(terms.signable_dict())``; every event about this consent (same id) verifies
    under the same key (:func:`verify_signatures`); ``now`` is inside ``not_before`` <= now <
    ``not_after``; and the status derived from the events (:func:`consent.terms.consent_status`)
    is ``given`` or ``renewed`` (:func:`judge_at`). Raises
    :class:`~consent.errors.SignatureInvalid` with a ``reason`` otherwise.
    """
    return judge_at(verify_signatures(signed, expected_verify_key, events, memo), now)
