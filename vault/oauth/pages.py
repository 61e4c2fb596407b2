"""Server-rendered pages: the authorization (consent) page and the developer page.

Properties of every page:

* ``Cache-Control: no-store``, ``X-Frame-Options: DENY`` and a Content-Security-Policy with
  ``frame-ancestors 'none'`` (no clickjacking), ``default-src 'none'`` (no scripts, nothing loaded
  from elsewhere: the one inline style carries a per-response nonce), ``form-action`` limited to
  this server (and, on the consent page, the client's validated redirect origin, where the decision
  redirects), ``Referrer-Policy: no-referrer``;
* every POST carries a form token (``vault.oauth.forms``) bound to a ``SameSite=Strict`` cookie;
  on the consent page it is also bound to the exact authorization request and works once;
* the consent page shows, in plain words and before any approval, who asks (and whether it is the
  city's own app), for what (scopes and ``authorization_details``) and where the browser goes next;
  Deny redirects with ``error=access_denied`` and ``iss``, like every authorization response.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from vault.clock import utcnow
from vault.crypto import token_secrets
from vault.crypto.root_keys import RootKeys
from vault.errors import AuthenticationFailed, DomainError, Forbidden, RateLimited
from vault.models import AccessToken, Citizen
from vault.oauth import clients, consent_screen, forms, policy, rar
from vault.oauth import repositories as repo
from vault.oauth.grants import AuthorizationAsk
from vault.oauth.issuance import Subject
from vault.oauth.runtime import OAuthRuntime
from vault.oauth.server import (
    CivicAuthorizationServer,
    CivicOAuth2Request,
    OAuthResult,
    RequestRefused,
    build_request,
    run_oauth,
)
from vault.repositories import citizens as citizen_repo
from vault.services import session_tokens
from vault.services.accounts import HANDLE_PATTERN

pages = APIRouter(include_in_schema=False)

AUTHZ_COOKIE = "cv_authz"
DEV_COOKIE = "cv_dev"
DEV_CSRF_COOKIE = "cv_dev_csrf"
_FORM_PURPOSE = "authorize"
_DEV_PURPOSE = "developers"


def oauth_runtime(request: Request) -> OAuthRuntime:
    value: OAuthRuntime = request.app.state.oauth
    return value


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class Page:
    template: str
    context: dict[str, Any]
    status: int = 200
    form_origins: tuple[str, ...] = ()
    cookies: tuple[tuple[str, str, str, int], ...] = field(default=())  # name, value, path, max_age


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def render(rt: OAuthRuntime, page: Page) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = rt.templates.get_template(page.template).render(
        **page.context, csp_nonce=nonce, issuer=rt.config.issuer
    )
    form_action = " ".join(["'self'", *page.form_origins])
    response = HTMLResponse(html, page.status)
    response.headers.update(
        {
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'nonce-{nonce}'; form-action {form_action}; "
                "frame-ancestors 'none'; base-uri 'none'"
            ),
        }
    )
    secure = rt.config.issuer.startswith("https://")
    for name, value, path, max_age in page.cookies:
        response.set_cookie(
            name, value, max_age=max_age, path=path, secure=secure, httponly=True, samesite="strict"
        )
    return response


def error_page(title: str, message: str, status: int = 400) -> Page:
    return Page("error.html", {"title": title, "message": message}, status)


# --------------------------------------------------------------------------------------------------
# The authorization endpoint
# --------------------------------------------------------------------------------------------------


def _authz_error(
    server: CivicAuthorizationServer, oreq: CivicOAuth2Request, error: OAuth2Error
) -> OAuthResult | Page:
    """Errors go back to the client (with ``iss``) only once its redirect URI is validated;
    before that they are shown here, never redirected (RFC 6749 §4.1.2.1, RFC 9700 §4.11)."""
    if error.redirect_uri:
        result: OAuthResult = server.handle_error_response(oreq, error)
        return result.with_issuer(server.rt.config.issuer)
    return error_page(
        "This sign-in link does not work",
        f"{error.description or error.error}. Go back to the app and try again; if it keeps "
        "happening, tell the app's developer.",
    )


def _consent_page(
    server: CivicAuthorizationServer,
    grant: Any,
    oreq: CivicOAuth2Request,
    binding: str,
    query: str,
    *,
    error: str | None = None,
    status: int = 200,
    handle: str = "",
) -> Page:
    rt = server.rt
    client: clients.ClientView = grant.request.client
    ask: AuthorizationAsk = grant.ask
    redirect_uri = grant.redirect_uri or oreq.payload.redirect_uri
    token = forms.issue(
        rt.form_key,
        _FORM_PURPOSE,
        binding,
        forms.request_digest(oreq.args),
        rt.config.form_ttl,
        utcnow(),
    )
    context = {
        "client_name": client.client_name,
        "client_id": client.client_id,
        "first_party": client.first_party,
        "staff": client.kind == policy.CLIENT_KIND_STAFF,
        "redirect_host": urlsplit(redirect_uri).netloc,
        "scope_words": consent_screen.describe_scopes(ask.scopes),
        "detail_words": [
            rt.vault.app_consents.summary(detail, client.client_id, client.client_name)
            for detail in ask.details
        ],
        "audience": ask.audience,
        "action": f"/oauth/authorize?{query}",
        "form_token": token,
        "error": error,
        "handle": handle,
    }
    return Page(
        "authorize.html",
        context,
        status,
        form_origins=(_origin(redirect_uri),),
        cookies=((AUTHZ_COOKIE, binding, "/oauth/authorize", 1800),),
    )


def unlock_citizen(
    rt: OAuthRuntime, session: Session, handle: str, passphrase: str, address: str
) -> tuple[Citizen, RootKeys]:
    """``CitizenAccounts.unlock``, but a handle that cannot exist is refused before any query
    (a NUL byte would make PostgreSQL fail the request instead of finding nobody)."""
    if not HANDLE_PATTERN.match(handle.strip().lower()):
        raise AuthenticationFailed("the handle or the passphrase is not right")
    return rt.vault.accounts.unlock(session, handle, passphrase, address)


class NothingApproved(Exception):
    """The consent approval hook approved nothing (or, wrongly, more than was asked)."""


def _sign_in(
    server: CivicAuthorizationServer, grant: Any, form: dict[str, str], address: str
) -> Subject:
    """Authenticate whoever the client's kind calls for, run the consent approval hook, and say
    who the code will be for. Raises the sign-in errors (the page shows them)."""
    rt, session = server.rt, server.session
    client: clients.ClientView = grant.request.client
    ask: AuthorizationAsk = grant.ask
    handle, passphrase = form.get("handle", ""), form.get("passphrase", "")
    family_id = uuid.uuid4().hex
    if client.kind == policy.CLIENT_KIND_STAFF:
        member = rt.staff.unlock(session, handle, passphrase, address)
        allowed = policy.STAFF_SCOPES_BY_ROLE.get(member.role, frozenset())
        if not ask.scopes <= allowed:
            raise Forbidden(f"your role ({member.role}) does not allow what this app asks for")
        return Subject(
            token_kind=policy.TOKEN_KIND_ANALYST,
            audience=ask.audience,
            staff_id=member.id,
            department_id=member.department_id,
            family_id=family_id,
        )
    citizen, root = unlock_citizen(rt, session, handle, passphrase, address)
    approved: list[dict[str, Any]] = []
    if ask.details:
        try:
            # A savepoint: what the hook wrote (consents, grants) is undone if it approved more
            # than was asked, or nothing at all.
            with session.begin_nested():
                returned = rt.consent_approval.approve(
                    session, citizen.id, root, client, list(ask.details)
                )
                approved = rar.check_within(returned, ask.details)
                if not approved:
                    raise NothingApproved("the approval approved nothing")
        except ValueError as exc:
            raise NothingApproved(str(exc)) from exc
    return Subject(
        token_kind=policy.TOKEN_KIND_CITIZEN if client.first_party else policy.TOKEN_KIND_APP,
        audience=ask.audience,
        citizen_id=citizen.id,
        authorization_details=tuple(approved),
        family_id=family_id,
        root_secret=root.secret if client.first_party else None,
    )


def _has_code(result: OAuthResult) -> bool:
    location = result.location or ""
    params = parse_qs(urlsplit(location).query)
    return "code" in params and "error" not in params


def _decide(
    server: CivicAuthorizationServer,
    oreq: CivicOAuth2Request,
    binding: str | None,
    query: str,
    address: str,
) -> OAuthResult | Page:
    rt = server.rt
    try:
        grant = server.get_consent_grant(oreq)
    except OAuth2Error as error:
        return _authz_error(server, oreq, error)
    now = utcnow()
    checked = forms.verify(
        rt.form_key,
        oreq.form.get("form_token"),
        _FORM_PURPOSE,
        binding,
        forms.request_digest(oreq.args),
        now,
    )
    if (
        binding is None
        or checked is None
        or not repo.use_form_nonce(server.session, checked.nonce, checked.expires_at, now)
    ):
        return error_page(
            "This page has expired",
            "This sign-in form was already used, has expired, or came from another browser "
            "window. Go back to the app and start again.",
        )
    client: clients.ClientView = grant.request.client
    decision = oreq.form.get("decision")
    if decision == "deny":
        _audit_denial(server, client, oreq.form, address)
        result: OAuthResult = server.create_authorization_response(
            oreq, grant_user=None, grant=grant
        )
        return result.with_issuer(rt.config.issuer)
    if decision != "approve":
        return error_page("Nothing was decided", "Choose Approve or Deny.")
    handle = oreq.form.get("handle", "")
    try:
        subject = _sign_in(server, grant, oreq.form, address)
    except (AuthenticationFailed, RateLimited, Forbidden) as exc:
        status = {"authentication_failed": 401, "rate_limited": 429}.get(exc.code, 403)
        return _consent_page(
            server, grant, oreq, binding, query, error=exc.message, status=status, handle=handle
        )
    except NothingApproved:
        result = server.create_authorization_response(oreq, grant_user=None, grant=grant)
        return result.with_issuer(rt.config.issuer)
    result = server.create_authorization_response(oreq, grant_user=subject, grant=grant)
    if subject.citizen_id is not None and _has_code(result):
        consents = [d["consent_id"] for d in subject.authorization_details if d.get("consent_id")]
        details: dict[str, Any] = {
            "client": client.client_id,
            "scope": policy.format_scope(grant.ask.scopes),
        }
        if consents:
            details["consents"] = consents
        rt.vault.audit.append(
            server.session, subject.citizen_id, "citizen", "app.authorized", details
        )
    return result.with_issuer(rt.config.issuer)


def _audit_denial(
    server: CivicAuthorizationServer, client: clients.ClientView, form: dict[str, str], address: str
) -> None:
    """With a citizen's sign-in filled in, record the refusal in their audit log (a wrong sign-in
    is simply not recorded: the answer to the app is the same ``access_denied``)."""
    handle, passphrase = form.get("handle", ""), form.get("passphrase", "")
    if client.kind != policy.CLIENT_KIND_CITIZEN or not handle or not passphrase:
        return
    try:
        citizen, _ = unlock_citizen(server.rt, server.session, handle, passphrase, address)
    except DomainError:
        return
    server.rt.vault.audit.append(
        server.session, citizen.id, "citizen", "app.denied", {"client": client.client_id}
    )


def _respond(
    rt: OAuthRuntime, outcome: OAuthResult | Page, *, after_post: bool = False
) -> Response:
    if isinstance(outcome, OAuthResult):
        return outcome.to_response(after_post=after_post)
    return render(rt, outcome)


@pages.get("/oauth/authorize")
async def authorize_page(request: Request) -> Response:
    """The consent page (sign in, then Approve or Deny)."""
    rt = oauth_runtime(request)
    try:
        oreq = await build_request(request, rt.config.issuer, from_query=True, read_form=False)
    except RequestRefused as refused:
        return render(
            rt,
            error_page(
                "This sign-in link does not work",
                str(
                    refused.result.body.get("error_description")
                    if isinstance(refused.result.body, dict)
                    else ""
                ),
            ),
        )
    cookie = request.cookies.get(AUTHZ_COOKIE)
    binding = cookie if cookie and forms.valid_binding(cookie) else forms.new_binding()
    query = request.url.query

    def work(server: CivicAuthorizationServer) -> OAuthResult | Page:
        try:
            grant = server.get_consent_grant(oreq)
        except OAuth2Error as error:
            return _authz_error(server, oreq, error)
        return _consent_page(server, grant, oreq, binding, query)

    return _respond(rt, await run_oauth(rt, work))


@pages.post("/oauth/authorize")
async def authorize_decision(request: Request) -> Response:
    rt = oauth_runtime(request)
    try:
        oreq = await build_request(request, rt.config.issuer, from_query=True)
    except RequestRefused as refused:
        body = refused.result.body
        return render(
            rt,
            error_page(
                "This form could not be read",
                str(body.get("error_description") if isinstance(body, dict) else ""),
            ),
        )
    binding = request.cookies.get(AUTHZ_COOKIE)
    query, address = request.url.query, _address(request)
    outcome = await run_oauth(rt, lambda server: _decide(server, oreq, binding, query, address))
    return _respond(rt, outcome, after_post=True)


# --------------------------------------------------------------------------------------------------
# The developer page
# --------------------------------------------------------------------------------------------------


def issue_developer_session(session: Session, citizen_id: str, ttl: int) -> str:
    """A short session for the developer page only: its audience is no API's, so it opens nothing
    but this page (and ``/oauth/register``). It carries no key to the citizen's data."""
    token = token_secrets.new_token()
    now = utcnow()
    session.add(
        AccessToken(
            digest=token_secrets.token_digest(token),
            kind=policy.TOKEN_KIND_DEVELOPER,
            citizen_id=citizen_id,
            scope="",
            audience=policy.DEVELOPER_AUDIENCE,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    session.flush()
    return token


def developer_of(session: Session, token: str | None) -> str | None:
    """The citizen id behind a developer-page session cookie, or ``None``."""
    if not token:
        return None
    try:
        principal = session_tokens.resolve(session, token)
    except DomainError:
        return None
    if (
        principal.kind != policy.TOKEN_KIND_DEVELOPER
        or principal.audience != policy.DEVELOPER_AUDIENCE
    ):
        return None
    return principal.citizen_id


def _dev_binding(request: Request) -> str:
    cookie = request.cookies.get(DEV_CSRF_COOKIE)
    return cookie if cookie and forms.valid_binding(cookie) else forms.new_binding()


def _dev_page(
    rt: OAuthRuntime,
    session: Session,
    citizen_id: str | None,
    binding: str,
    *,
    shown_secret: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
    session_token: str | None = None,
    end_session: bool = False,
) -> Page:
    apps: list[dict[str, Any]] = []
    handle = None
    if citizen_id is not None:
        citizen = citizen_repo.by_id(session, citizen_id)
        handle = citizen.handle if citizen else None
        for app in clients.owned_clients(session, citizen_id):
            apps.append(
                {
                    "client_id": app.client_id,
                    "client_name": app.client_name,
                    "public": app.is_public,
                    "redirect_uris": list(app.redirect_uris),
                    "scope": " ".join(sorted(app.scope)),
                }
            )
    token = forms.issue(
        rt.form_key, _DEV_PURPOSE, binding, b"", policy.DEVELOPER_SESSION_TTL, utcnow()
    )
    cookies: list[tuple[str, str, str, int]] = [(DEV_CSRF_COOKIE, binding, "/developers", 7200)]
    if session_token is not None:
        cookies.append((DEV_COOKIE, session_token, "/developers", policy.DEVELOPER_SESSION_TTL))
    if end_session:
        cookies.append((DEV_COOKIE, "", "/developers", 0))
    context = {
        "signed_in": citizen_id is not None,
        "handle": handle,
        "apps": apps,
        "form_token": token,
        "shown_secret": shown_secret,
        "error": error,
        "third_party_scopes": sorted(policy.THIRD_PARTY_SCOPES),
        "scope_words": policy.SCOPE_WORDS,
    }
    return Page("developers.html", context, status, cookies=tuple(cookies))


async def _dev_form(request: Request) -> dict[str, str] | None:
    """The form fields (the ``scope`` checkboxes joined by spaces), or ``None`` if not a form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    data = await request.form()
    out: dict[str, str] = {}
    for key, value in data.multi_items():
        if not isinstance(value, str):
            continue
        out[key] = f"{out[key]} {value}" if key == "scope" and key in out else value
    return out


def _dev_checked(rt: OAuthRuntime, request: Request, form: dict[str, str] | None) -> bool:
    if form is None:
        return False
    binding = request.cookies.get(DEV_CSRF_COOKIE)
    return (
        forms.verify(rt.form_key, form.get("form_token"), _DEV_PURPOSE, binding, b"", utcnow())
        is not None
    )


async def _in_uow(rt: OAuthRuntime, work: Callable[[Session], Page]) -> Page:
    def _run() -> Page:
        with rt.vault.unit_of_work() as session:
            page: Page = work(session)
            return page

    return await run_in_threadpool(_run)


_CSRF_FAILED = "This form has expired or came from another page. Reload the page and try again."


@pages.get("/developers")
async def developers(request: Request) -> Response:
    """Register apps, see their client ids, rotate secrets, and a short guide."""
    rt = oauth_runtime(request)
    binding = _dev_binding(request)
    token = request.cookies.get(DEV_COOKIE)
    return render(
        rt, await _in_uow(rt, lambda s: _dev_page(rt, s, developer_of(s, token), binding))
    )


@pages.post("/developers/sign-in")
async def developer_sign_in(request: Request) -> Response:
    rt = oauth_runtime(request)
    form = await _dev_form(request)
    binding = _dev_binding(request)
    if not _dev_checked(rt, request, form):
        return render(
            rt,
            await _in_uow(
                rt, lambda s: _dev_page(rt, s, None, binding, error=_CSRF_FAILED, status=400)
            ),
        )
    assert form is not None
    address = _address(request)

    def work(session: Session) -> Page:
        try:
            citizen, _ = unlock_citizen(
                rt, session, form.get("handle", ""), form.get("passphrase", ""), address
            )
        except (AuthenticationFailed, RateLimited) as exc:
            return _dev_page(
                rt,
                session,
                None,
                binding,
                error=exc.message,
                status=401 if exc.code == "authentication_failed" else 429,
            )
        token = issue_developer_session(session, citizen.id, policy.DEVELOPER_SESSION_TTL)
        return _dev_page(rt, session, citizen.id, binding, session_token=token)

    return render(rt, await _in_uow(rt, work))


@pages.post("/developers/sign-out")
async def developer_sign_out(request: Request) -> Response:
    rt = oauth_runtime(request)
    form = await _dev_form(request)
    binding = _dev_binding(request)
    token = request.cookies.get(DEV_COOKIE)

    def work(session: Session) -> Page:
        if _dev_checked(rt, request, form) and token:
            with contextlib.suppress(token_secrets.TokenFormatError):
                session_tokens.revoke(session, token_secrets.token_digest(token))
        return _dev_page(rt, session, None, binding, end_session=True)

    return render(rt, await _in_uow(rt, work))


@pages.post("/developers/apps")
async def developer_register(request: Request) -> Response:
    rt = oauth_runtime(request)
    form = await _dev_form(request)
    binding = _dev_binding(request)
    token = request.cookies.get(DEV_COOKIE)
    checked = _dev_checked(rt, request, form)

    def work(session: Session) -> Page:
        citizen_id = developer_of(session, token)
        if citizen_id is None:
            return _dev_page(rt, session, None, binding, error="Sign in first.", status=401)
        if not checked or form is None:
            return _dev_page(rt, session, citizen_id, binding, error=_CSRF_FAILED, status=400)
        uris = [u.strip() for u in form.get("redirect_uris", "").splitlines() if u.strip()]
        scope = " ".join(s for s in form.get("scope", "").split() if s)
        try:
            with session.begin_nested():
                reg = clients.register_third_party(
                    session,
                    client_name=form.get("client_name", ""),
                    redirect_uris=uris,
                    grant_types=None,
                    response_types=None,
                    token_endpoint_auth_method="none"
                    if form.get("client_type") == "public"
                    else "client_secret_basic",
                    scope=scope or None,
                    owner_citizen_id=citizen_id,
                )
        except clients.ClientMetadataError as exc:
            return _dev_page(rt, session, citizen_id, binding, error=exc.message, status=400)
        shown = {"client_id": reg.client.client_id, "client_secret": reg.client_secret or ""}
        return _dev_page(rt, session, citizen_id, binding, shown_secret=shown, status=201)

    return render(rt, await _in_uow(rt, work))


@pages.post("/developers/apps/{client_id}/rotate-secret")
async def developer_rotate(client_id: str, request: Request) -> Response:
    rt = oauth_runtime(request)
    form = await _dev_form(request)
    binding = _dev_binding(request)
    token = request.cookies.get(DEV_COOKIE)
    checked = _dev_checked(rt, request, form)

    def work(session: Session) -> Page:
        citizen_id = developer_of(session, token)
        if citizen_id is None:
            return _dev_page(rt, session, None, binding, error="Sign in first.", status=401)
        if not checked:
            return _dev_page(rt, session, citizen_id, binding, error=_CSRF_FAILED, status=400)
        try:
            with session.begin_nested():
                secret = clients.rotate_secret(session, client_id, citizen_id)
        except DomainError as exc:
            status = 404 if exc.code == "not_found" else 400
            return _dev_page(rt, session, citizen_id, binding, error=exc.message, status=status)
        return _dev_page(
            rt,
            session,
            citizen_id,
            binding,
            shown_secret={"client_id": client_id, "client_secret": secret},
        )

    return render(rt, await _in_uow(rt, work))
