"""Staff accounts: a department's analysts and data-protection officers, who sign in on the
authorization endpoint of the department console and get tokens for the aggregation service.

Properties:

* the password is stored only as libsodium's Argon2id string (``nacl.pwhash.argon2id.str``);
* a wrong handle and a wrong password give the same answer after the same work (a dummy hash is
  checked for unknown handles);
* repeated failures lock the account for a doubling time, and the address through the shared
  ``LoginThrottle``, exactly like citizens' sign-in;
* staff accounts never hold a citizen's keys: their tokens carry ``department_id`` and the
  aggregation audience only.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import timedelta

import nacl.exceptions
import nacl.pwhash
from sqlmodel import Session, select

from vault.clock import utcnow
from vault.crypto.passphrase_wrap import KdfCost
from vault.errors import AuthenticationFailed, Conflict, InvalidInput, RateLimited
from vault.login_throttle import LoginThrottle
from vault.oauth.models import StaffAccount
from vault.services.accounts import HANDLE_PATTERN, check_handle, check_passphrase

ROLES = ("analyst", "dpo")
_BAD_LOGIN = "the handle or the password is not right"


@dataclass(frozen=True)
class StaffMember:
    id: str
    handle: str
    department_id: str
    role: str


def _hash(passphrase: str, cost: KdfCost) -> str:
    value: bytes = nacl.pwhash.argon2id.str(
        passphrase.encode("utf-8"), opslimit=cost.opslimit, memlimit=cost.memlimit
    )
    return value.decode("ascii")


def password_matches(password_hash: str, passphrase: str) -> bool:
    """Whether ``passphrase`` is the one ``password_hash`` was made from."""
    return _verify(password_hash, passphrase)


def _verify(password_hash: str, passphrase: str) -> bool:
    try:
        return bool(nacl.pwhash.verify(password_hash.encode("ascii"), passphrase.encode("utf-8")))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False


def create_staff_account(
    session: Session,
    handle: str,
    passphrase: str,
    department_id: str,
    role: str,
    *,
    cost: KdfCost | None = None,
) -> StaffMember:
    """Create an analyst or DPO of ``department_id`` (called by the demo seed or an administrator)."""
    handle = check_handle(handle)
    check_passphrase(passphrase)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if not department_id or len(department_id) > 64:
        raise InvalidInput("department_id must be 1 to 64 characters")
    if session.exec(select(StaffAccount).where(StaffAccount.handle == handle)).first():
        raise Conflict("that staff handle is taken")
    row = StaffAccount(
        id=uuid.uuid4().hex,
        handle=handle,
        password_hash=_hash(passphrase, cost or KdfCost.profile("interactive")),
        department_id=department_id,
        role=role,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return StaffMember(row.id, row.handle, row.department_id, row.role)


def set_staff_password(
    session: Session, handle: str, passphrase: str, *, cost: KdfCost | None = None
) -> None:
    """Replace a staff member's password (an administrator's reset; used by the demo seed)."""
    check_passphrase(passphrase)
    row = session.exec(select(StaffAccount).where(StaffAccount.handle == handle)).first()
    if row is None:
        raise InvalidInput(f"no staff account {handle!r}")
    row.password_hash = _hash(passphrase, cost or KdfCost.profile("interactive"))
    row.failed_logins, row.locked_until = 0, None
    session.add(row)
    session.flush()


def staff_by_id(session: Session, staff_id: str) -> StaffMember | None:
    row = session.get(StaffAccount, staff_id)
    if row is None or row.disabled_at is not None:
        return None
    return StaffMember(row.id, row.handle, row.department_id, row.role)


class StaffAccounts:
    """Signing staff in (see the module docstring for the properties)."""

    def __init__(
        self,
        cost: KdfCost,
        throttle: LoginThrottle,
        free_failures: int = 5,
        max_lockout_seconds: int = 900,
    ) -> None:
        self._cost = cost
        self._throttle = throttle
        self._free_failures = free_failures
        self._max_lockout = max_lockout_seconds
        self._dummy: str | None = None

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = _hash(uuid.uuid4().hex, self._cost)
        return self._dummy

    def unlock(self, session: Session, handle: str, passphrase: str, address: str) -> StaffMember:
        """The staff member, or a uniform :class:`AuthenticationFailed` / :class:`RateLimited`."""
        key = f"staff:{address}"
        handle = handle.strip().lower()
        row = None
        if HANDLE_PATTERN.match(handle):  # anything else is no account (and must not reach SQL)
            row = session.exec(select(StaffAccount).where(StaffAccount.handle == handle)).first()
        wait = self._throttle.retry_after(key)
        if row is not None and row.locked_until is not None:
            wait = max(wait, int((row.locked_until - utcnow()).total_seconds()) + 1)
        if wait > 0:
            raise RateLimited(
                f"too many failed attempts; try again in {wait} seconds",
                headers={"Retry-After": str(wait)},
            )
        if row is None or row.disabled_at is not None:
            with contextlib.suppress(Exception):
                _verify(self._dummy_hash(), passphrase)
            self._throttle.record_failure(key)
            raise AuthenticationFailed(_BAD_LOGIN)
        if not _verify(row.password_hash, passphrase):
            self._throttle.record_failure(key)
            row.failed_logins += 1
            over = row.failed_logins - self._free_failures
            if over >= 0:
                row.locked_until = utcnow() + timedelta(seconds=min(2**over, self._max_lockout))
            session.add(row)
            session.flush()
            raise AuthenticationFailed(_BAD_LOGIN)
        self._throttle.record_success(key)
        if row.failed_logins or row.locked_until:
            row.failed_logins, row.locked_until = 0, None
            session.add(row)
            session.flush()
        return StaffMember(row.id, row.handle, row.department_id, row.role)
