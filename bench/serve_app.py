"""Launcher for the HTTP benchmarks: ``python -m bench.serve_app --app vault|baseline --port N``.

``vault``: migrates the database named by ``CIVIC_*`` (``Settings.from_env()``), then serves
``create_app(settings)``. ``baseline``: serves the bare FastAPI app of :mod:`bench.baseline_app`.
Both run under the same uvicorn settings (one worker, no access log, log level warning, loopback
only), so that their ratio measures the application and not the server configuration.
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

LOOPBACK = "127.0.0.1"


def build(app: str) -> FastAPI:
    if app == "vault":
        from server.app import create_app
        from server.migrate import upgrade_to_head
        from vault.settings import Settings

        settings = Settings.from_env()
        upgrade_to_head(settings.resolved_database_url)
        return create_app(settings)
    from bench.baseline_app import create_baseline_app

    return create_baseline_app()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_app", description=__doc__)
    parser.add_argument("--app", choices=("vault", "baseline"), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    import uvicorn

    uvicorn.run(
        build(args.app),
        host=LOOPBACK,
        port=args.port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=3,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
