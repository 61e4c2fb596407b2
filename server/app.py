"""The composition root: assembles the packages' routers and services into one ASGI app. No logic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from aggregation.api import build_router as aggregation_router
from aggregation.background import settle_forever
from aggregation.runtime import AggregationRuntime
from clients.analyst_console import mount_console
from clients.citizen_app import mount_citizen_app
from server.api_docs import mount_api_docs
from vault.api import accounts, catalogue, consents, portability, streams
from vault.api.body_limit import BodySizeLimit
from vault.api.deps import citizen_id_of, require
from vault.api.errors import install_error_handlers
from vault.background import expire_consents_forever
from vault.oauth.api import install as install_oauth
from vault.rate_limits import RateLimitMiddleware, RateLimits
from vault.runtime import VaultRuntime
from vault.settings import Settings


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    vault = VaultRuntime.build(settings, engine)
    aggregation = AggregationRuntime.build(vault)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        expiry = asyncio.create_task(
            expire_consents_forever(vault, settings.expiry_interval_seconds)
        )
        notices = asyncio.create_task(settle_forever(aggregation, settings.expiry_interval_seconds))
        try:
            yield
        finally:
            expiry.cancel()
            notices.cancel()
            aggregation.close()
            vault.close()

    app = FastAPI(
        title="Civic Vault",
        version="0.1.0",
        description="Your city data, encrypted with your keys, shared only on your terms.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    # Routes are matched in order, one by one: the streams router (appends are the busiest
    # route) comes first. No two routers share a path, so the order changes nothing else.
    app.include_router(streams.router)
    mount_api_docs(app)
    app.state.vault = vault
    app.state.aggregation = aggregation
    install_error_handlers(app)
    for module in (catalogue, accounts, portability, consents):
        app.include_router(module.router)
    app.include_router(aggregation_router(require, citizen_id_of))
    install_oauth(app)
    mount_citizen_app(app)  # /app, calling this app in-process over HTTP (docs/citizen-app.md)
    mount_console(app)  # /console, the department console (docs/analyst-guide.md)
    app.add_middleware(
        BodySizeLimit,
        limit=settings.max_body_bytes,
        read_timeout=settings.body_read_timeout_seconds,
    )
    app.add_middleware(RateLimitMiddleware, limits=RateLimits.from_settings(settings))
    return app
