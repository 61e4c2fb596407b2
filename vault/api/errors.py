"""The one place where errors become HTTP responses.

Every error body has the same shape::

    {"code": "invalid_batch", "message": "plain words", "details": [{"row": 3, "field": "kwh",
     "reason": "must be between 0 and 50 (got 51.2)"}]}
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from consent.errors import ConsentError
from vault.db import database_failure
from vault.errors import DomainError

log = logging.getLogger("civic_vault.api")

STATUS_BY_CODE: dict[str, int] = {
    "not_found": 404,
    "invalid_input": 422,
    "invalid_batch": 422,
    "bundle_invalid": 422,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "not_acceptable": 406,
    "conflict": 409,
    "authentication_failed": 401,
    "unauthenticated": 401,
    "forbidden": 403,
    "insufficient_scope": 403,
    "rate_limited": 429,
    "database_busy": 503,
    "database_unavailable": 503,
    "storage_full": 507,
    "integrity_error": 500,
    "consent_integrity_error": 409,
    # aggregation service errors
    "query_invalid": 422,
    "department_budget_exceeded": 409,
    "too_few_contributors": 403,
    "reservation_lost": 503,
    # consent package errors
    "terms_invalid": 422,
    "narrowing_refused": 422,
    "signature_invalid": 409,
}


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or []}


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        status = STATUS_BY_CODE.get(exc.code, 400)
        headers = dict(exc.headers)
        if status == 503:
            headers.setdefault("Retry-After", "1")
        if status == 401 and "WWW-Authenticate" not in headers:
            headers["WWW-Authenticate"] = 'Bearer realm="civic-vault"'
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status, headers=headers)

    # The database failing (connection lost, server restarting, disk full, files read-only) is
    # answered as a domain error (503 with Retry-After, or 507); anything else stays a 500.
    # sqlite3 errors also arrive unwrapped: the SQLite engine commits in an event listener; and
    # both drivers' errors do from the bulk statements of a release (vault/repositories/driver_sql).
    @app.exception_handler(DBAPIError)
    @app.exception_handler(sqlite3.Error)
    @app.exception_handler(psycopg.Error)
    @app.exception_handler(PoolTimeout)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        mapped = database_failure(exc)
        if mapped is None:
            raise exc
        log.warning(
            "%s %s: %s (%s)",
            request.method,
            request.url.path,
            mapped.code,
            str(exc).splitlines()[0],
        )
        return await _domain(request, mapped)

    @app.exception_handler(ConsentError)
    async def _consent(_request: Request, exc: ConsentError) -> JSONResponse:
        problems = [dict(p) for p in getattr(exc, "problems", [])]
        return JSONResponse(
            error_body(exc.code, str(exc), problems), STATUS_BY_CODE.get(exc.code, 422)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": _field_of(tuple(err.get("loc", ()))),
                "reason": str(err.get("msg", "invalid")),
            }
            for err in exc.errors()
        ]
        fields = ", ".join(sorted({d["field"] for d in details}))
        return JSONResponse(
            error_body("invalid_input", f"the request is not valid: check {fields}", details), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )
