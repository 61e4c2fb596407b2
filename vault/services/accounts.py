"""Citizen accounts: registration, sign-in, passphrase change and recovery.

Properties:
* the root secret is stored only wrapped, under the passphrase and under the one-time recovery code;
* a wrong handle and a wrong passphrase give the same answer in about the same time;
* repeated failures lock the account for a growing time (and the address, see ``LoginThrottle``);
* changing the passphrase or recovering re-wraps the root secret and re-encrypts no data.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from vault.clock import utcnow
from vault.crypto.passphrase_wrap import KdfCost, WrongPassphrase, unwrap_secret, wrap_secret
from vault.crypto.recovery_code import new_recovery_code, normalise_recovery_code
from vault.crypto.root_keys import RootKeys
from vault.errors import AuthenticationFailed, Conflict, InvalidInput, RateLimited
from vault.login_throttle import LoginThrottle
from vault.models import Citizen
from vault.oauth import repositories as oauth_repo
from vault.repositories import citizens as citizen_repo
from vault.repositories import tokens as token_repo
from vault.services.audit_log import AuditLog
from vault.services.session_tokens import issue_citizen_session

HANDLE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
MIN_PASSPHRASE = 10
MAX_PASSPHRASE = 1024
_RECOVERY_COST = KdfCost.profile("min")
_BAD_LOGIN = "the handle or the passphrase is not right"


@dataclass(frozen=True)
class Registration:
    citizen_id: str
    handle: str
    recovery_code: str
    box_public: bytes
    verify_key: bytes


@dataclass(frozen=True)
class SignedIn:
    citizen_id: str
    access_token: str
    expires_in: int
    root: RootKeys


def check_handle(handle: str) -> str:
    value = handle.strip().lower()
    if not HANDLE_PATTERN.match(value):
        raise InvalidInput(
            "handle must be 3 to 64 characters: lower-case letters, digits, '.', '_' or '-'",
            details=[{"field": "handle", "reason": "3-64 characters of a-z, 0-9, '.', '_', '-'"}],
        )
    return value


def check_passphrase(passphrase: str, field: str = "passphrase") -> str:
    if len(passphrase) < MIN_PASSPHRASE or len(passphrase) > MAX_PASSPHRASE:
        raise InvalidInput(
            f"{field} must be between {MIN_PASSPHRASE} and {MAX_PASSPHRASE} characters",
            details=[{"field": field, "reason": f"at least {MIN_PASSPHRASE} characters"}],
        )
    return passphrase


def revoke_everything(session: Session, citizen_id: str) -> None:
    """End every session and every app's grant of the citizen (their copies of the root secret
    included): after a passphrase change or a recovery, only the new passphrase opens anything."""
    now = utcnow()
    token_repo.revoke_for_citizen(session, citizen_id, now)
    oauth_repo.revoke_families_for_citizen(session, citizen_id, now)


class CitizenAccounts:
    def __init__(
        self,
        audit: AuditLog,
        kdf_cost: KdfCost,
        token_ttl_seconds: int,
        free_failures: int,
        max_lockout_seconds: int,
        throttle: LoginThrottle,
    ) -> None:
        self._audit = audit
        self._cost = kdf_cost
        self._ttl = token_ttl_seconds
        self._free_failures = free_failures
        self._max_lockout = max_lockout_seconds
        self._throttle = throttle
        self._dummies: dict[KdfCost, bytes] = {}

    def _dummy_blob(self, cost: KdfCost | None = None) -> bytes:
        """A wrapped blob checked for unknown handles, so their check costs the same as a real one."""
        cost = cost or self._cost
        if cost not in self._dummies:
            self._dummies[cost] = wrap_secret(b"\0" * 64, uuid.uuid4().hex, cost)
        return self._dummies[cost]

    def register(
        self, session: Session, handle: str, passphrase: str, *, cost: KdfCost | None = None
    ) -> Registration:
        handle = check_handle(handle)
        check_passphrase(passphrase)
        if citizen_repo.handle_taken(session, handle):
            raise Conflict(
                "that handle is taken; choose another",
                details=[{"field": "handle", "reason": "already registered"}],
            )
        root = RootKeys.generate()
        code = new_recovery_code()
        citizen = Citizen(
            id=uuid.uuid4().hex,
            handle=handle,
            box_public=root.box_public,
            verify_key=root.verify_key,
            root_by_passphrase=wrap_secret(root.secret, passphrase, cost or self._cost),
            root_by_recovery=wrap_secret(
                root.secret, normalise_recovery_code(code), _RECOVERY_COST
            ),
            created_at=utcnow(),
        )
        session.add(citizen)
        session.flush()
        self._audit.append(session, citizen.id, "citizen", "account.created", {})
        return Registration(citizen.id, handle, code, root.box_public, root.verify_key)

    def _check_not_locked(self, citizen: Citizen | None, address: str) -> None:
        wait = self._throttle.retry_after(address)
        if citizen is not None and citizen.locked_until is not None:
            wait = max(wait, int((citizen.locked_until - utcnow()).total_seconds()) + 1)
        if wait > 0:
            raise RateLimited(
                f"too many failed attempts; try again in {wait} seconds",
                headers={"Retry-After": str(wait)},
            )

    def _record_failure(self, session: Session, citizen: Citizen | None, address: str) -> None:
        self._throttle.record_failure(address)
        if citizen is None:
            return
        citizen.failed_logins += 1
        over = citizen.failed_logins - self._free_failures
        if over >= 0:
            citizen.locked_until = utcnow() + timedelta(seconds=min(2**over, self._max_lockout))
        session.add(citizen)
        session.flush()

    def unlock(
        self, session: Session, handle: str, passphrase: str, address: str
    ) -> tuple[Citizen, RootKeys]:
        """The citizen and their root keys, or a uniform failure (see the module docstring)."""
        wanted = handle.strip().lower()
        # A handle that cannot exist is never sent to the database (NUL bytes, odd lengths).
        citizen = citizen_repo.by_handle(session, wanted) if HANDLE_PATTERN.match(wanted) else None
        self._check_not_locked(citizen, address)
        if citizen is None or citizen.root_by_passphrase is None:
            # Spend the same work as a real check so that timing does not reveal the handle exists.
            with contextlib.suppress(WrongPassphrase):
                unwrap_secret(self._dummy_blob(), passphrase)
            self._record_failure(session, None, address)
            raise AuthenticationFailed(_BAD_LOGIN)
        try:
            secret = unwrap_secret(citizen.root_by_passphrase, passphrase)
        except WrongPassphrase:
            self._record_failure(session, citizen, address)
            raise AuthenticationFailed(_BAD_LOGIN) from None
        self._throttle.record_success(address)
        if citizen.failed_logins or citizen.locked_until:
            citizen.failed_logins, citizen.locked_until = 0, None
            session.add(citizen)
        return citizen, RootKeys.from_secret(secret)

    def sign_in(self, session: Session, handle: str, passphrase: str, address: str) -> SignedIn:
        citizen, root = self.unlock(session, handle, passphrase, address)
        token = issue_citizen_session(session, citizen.id, root, self._ttl)
        self._audit.append(session, citizen.id, "citizen", "session.started", {})
        return SignedIn(citizen.id, token, self._ttl, root)

    def change_passphrase(
        self, session: Session, citizen_id: str, current: str, new: str, address: str
    ) -> None:
        check_passphrase(new, "new_passphrase")
        citizen = citizen_repo.by_id(session, citizen_id, for_update=True)
        if citizen is None:
            raise AuthenticationFailed(_BAD_LOGIN)
        _, root = self.unlock(session, citizen.handle, current, address)
        citizen.root_by_passphrase = wrap_secret(root.secret, new, self._cost)
        session.add(citizen)
        revoke_everything(session, citizen.id)
        self._audit.append(session, citizen.id, "citizen", "passphrase.changed", {})

    def recover(
        self, session: Session, handle: str, recovery_code: str, new_passphrase: str, address: str
    ) -> str:
        """Set a new passphrase with the recovery code; returns a fresh recovery code (the old one
        stops working)."""
        check_passphrase(new_passphrase, "new_passphrase")
        wanted = handle.strip().lower()
        citizen = citizen_repo.by_handle(session, wanted) if HANDLE_PATTERN.match(wanted) else None
        self._check_not_locked(citizen, address)
        if citizen is None or citizen.root_by_recovery is None:
            # The same work as a real check, so that timing does not reveal the handle exists.
            with contextlib.suppress(WrongPassphrase):
                unwrap_secret(self._dummy_blob(_RECOVERY_COST), recovery_code)
            self._record_failure(session, None, address)
            raise AuthenticationFailed("the handle or the recovery code is not right")
        try:
            secret = unwrap_secret(citizen.root_by_recovery, normalise_recovery_code(recovery_code))
        except WrongPassphrase:
            self._record_failure(session, citizen, address)
            raise AuthenticationFailed("the handle or the recovery code is not right") from None
        code = new_recovery_code()
        citizen.root_by_passphrase = wrap_secret(secret, new_passphrase, self._cost)
        citizen.root_by_recovery = wrap_secret(
            secret, normalise_recovery_code(code), _RECOVERY_COST
        )
        citizen.failed_logins, citizen.locked_until = 0, None
        session.add(citizen)
        revoke_everything(session, citizen.id)
        self._audit.append(session, citizen.id, "citizen", "account.recovered", {})
        return code
