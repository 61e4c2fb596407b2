"""Routes: registration, sessions, recovery, passphrase change, the citizen's profile and erasure."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from vault.api.deps import ClientAddress, Runtime, citizen_id_of, require
from vault.api.schemas import (
    DeletedOut,
    DeleteMeIn,
    MeOut,
    PassphraseChangeIn,
    RecoverIn,
    RecoverOut,
    RegistrationIn,
    RegistrationOut,
    SessionIn,
    SessionOut,
)
from vault.errors import NotFound
from vault.principal import Principal
from vault.repositories import citizens as citizen_repo
from vault.services import session_tokens

router = APIRouter(tags=["citizens"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@router.post("/v1/citizens", status_code=201, response_model=RegistrationOut)
def register(body: RegistrationIn, rt: Runtime) -> RegistrationOut:
    with rt.unit_of_work() as session:
        reg = rt.accounts.register(session, body.handle, body.passphrase)
    return RegistrationOut(
        citizen_id=reg.citizen_id,
        handle=reg.handle,
        recovery_code=reg.recovery_code,
        box_public_key=_b64(reg.box_public),
        signing_public_key=_b64(reg.verify_key),
    )


@router.post("/v1/session", response_model=SessionOut)
def sign_in(body: SessionIn, rt: Runtime, address: ClientAddress, response: Response) -> SessionOut:
    with rt.unit_of_work() as session:
        signed = rt.accounts.sign_in(session, body.handle, body.passphrase, address)
    response.headers["Cache-Control"] = "no-store"
    return SessionOut(access_token=signed.access_token, expires_in=signed.expires_in)


@router.delete("/v1/session", status_code=204)
def sign_out(rt: Runtime, principal: Annotated[Principal, Depends(require())]) -> Response:
    with rt.unit_of_work() as session:
        session_tokens.revoke(session, principal.token_digest)
    return Response(status_code=204)


@router.post("/v1/citizens/recover", response_model=RecoverOut)
def recover(body: RecoverIn, rt: Runtime, address: ClientAddress) -> RecoverOut:
    with rt.unit_of_work() as session:
        code = rt.accounts.recover(
            session, body.handle, body.recovery_code, body.new_passphrase, address
        )
    return RecoverOut(recovery_code=code)


@router.get("/v1/me", response_model=MeOut)
def me(rt: Runtime, principal: Annotated[Principal, Depends(require())]) -> MeOut:
    citizen_id = citizen_id_of(principal)
    with rt.unit_of_work() as session:
        citizen = citizen_repo.by_id(session, citizen_id)
        if citizen is None:
            raise NotFound("citizen not found")
        return MeOut(
            citizen_id=citizen.id,
            handle=citizen.handle,
            box_public_key=_b64(citizen.box_public),
            signing_public_key=_b64(citizen.verify_key),
            created_at=citizen.created_at,
        )


@router.post("/v1/me/passphrase", status_code=204)
def change_passphrase(
    body: PassphraseChangeIn,
    rt: Runtime,
    address: ClientAddress,
    principal: Annotated[Principal, Depends(require("consent:manage"))],
) -> Response:
    citizen_id = citizen_id_of(principal)
    with rt.unit_of_work() as session:
        rt.accounts.change_passphrase(
            session, citizen_id, body.current_passphrase, body.new_passphrase, address
        )
    return Response(status_code=204)


@router.delete("/v1/me", response_model=DeletedOut)
def delete_me(
    body: DeleteMeIn,
    rt: Runtime,
    address: ClientAddress,
    principal: Annotated[Principal, Depends(require("consent:manage"))],
) -> DeletedOut:
    citizen_id = citizen_id_of(principal)
    with rt.unit_of_work() as session:
        tombstone = rt.erasure.erase(session, citizen_id, body.passphrase, address)
    rt.erasure.after_commit(rt.engine)
    return DeletedOut(
        deleted=True,
        tombstone_id=tombstone,
        message="Your account, your keys and your data were deleted from this vault.",
    )
