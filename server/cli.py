"""``civic-vault-server``: migrate, seed the demo city, serve. Used by ``make run``."""

from __future__ import annotations

import argparse
import gc
import socket
import sys
import time
from typing import TYPE_CHECKING

from vault.settings import Settings, SettingsError

if TYPE_CHECKING:
    from fastapi import FastAPI

#: The import string of the app factory each worker process calls (``create_app()`` reads the
#: ``CIVIC_*`` settings from the environment, which the workers inherit).
APP_FACTORY = "server.cli:create_served_app"

#: uvicorn's exit status when the app could not start.
STARTUP_FAILURE = 3


def _progress(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(
        f"\r  seeding demo city [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    )
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def migrate(settings: Settings) -> None:
    from server.migrate import upgrade_to_head

    upgrade_to_head(settings.resolved_database_url)


def seed(settings: Settings, *, only_if_empty: bool) -> None:
    import json

    from vault.demo_city import database_is_empty, seed_demo_city, write_private_json
    from vault.oauth.demo import ensure_citizen_app_callback, seed_oauth_demo
    from vault.oauth.runtime import OAuthRuntime
    from vault.runtime import VaultRuntime

    rt = VaultRuntime.build(settings)
    try:
        if only_if_empty and not database_is_empty(rt):
            print("  demo city: the database already has citizens; not seeding again")
            # A database seeded before the citizen app was mounted at /app: let it sign in.
            ensure_citizen_app_callback(rt, OAuthRuntime.build(rt))
            return
        started = time.perf_counter()
        path = settings.data_dir / "demo-credentials.json"
        report = seed_demo_city(
            rt, settings.demo_citizens, credentials_path=path, progress=_progress
        )
        # The departments' service clients and analysts, the citizen app and the example app.
        credentials = json.loads(path.read_text(encoding="utf-8"))
        credentials.update(seed_oauth_demo(rt, OAuthRuntime.build(rt), credentials))
        write_private_json(path, credentials)
        print(
            f"  demo city: {report.citizens} citizens seeded in {time.perf_counter() - started:.1f} s;"
            f" demo sign-ins are in {path}"
        )
    finally:
        rt.engine.dispose()


def seed_bulk(settings: Settings, citizens: int, records: int, seed: int) -> None:
    """A benchmark city (``vault.demo_bulk``): bulk citizens with energy readings and consents."""
    from vault.demo_bulk import seed_bulk_city
    from vault.runtime import VaultRuntime

    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        sys.stderr.write(
            f"\r  seeding bulk city: {done:,}/{total:,} citizens, {elapsed:,.0f} s"
            f" ({done / max(elapsed, 1e-9):,.0f} citizens/s)"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    rt = VaultRuntime.build(settings)
    try:
        report = seed_bulk_city(rt, citizens, records, seed, progress=progress)
    finally:
        rt.engine.dispose()
    print(
        f"  bulk city: {report.citizens} citizens seeded ({report.skipped} already there) in"
        f" {report.seconds:.1f} s, {report.citizens_per_second:,.0f} citizens/s;"
        f" {report.accepted} accepted {report.declined} declined; database"
        f" {settings.resolved_database_url}"
    )


def freeze_startup_heap() -> None:
    """Put everything built so far out of the cyclic garbage collector's way (``gc.freeze``).

    Why: the app holds about 200,000 tracked objects (routes, models, mappers, catalogues) that
    live as long as the process. Each full collection walked all of them and paused the event loop
    for up to ~120 ms, every few seconds under load: that was the p99 of every route (measured:
    one-record ingest p99 117 -> 31 ms in process). Objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()


def create_served_app() -> FastAPI:
    """The app for a worker process: :func:`server.app.create_app`, then the start-up heap frozen."""
    from server.app import create_app

    app = create_app()
    freeze_startup_heap()
    return app


class CannotListen(RuntimeError):
    """The address and port could not be bound (in use, not an address of this machine)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's listening TCP socket, bound here and handed to uvicorn (one or more workers).

    Why not let uvicorn bind it: with ``--workers N`` uvicorn binds the socket itself
    (``Config.bind_socket``: ``socket.socket(family=...)``), so Python records its protocol as 0.
    Every accepted connection is a Python socket made with the listener's protocol
    (``socket.accept``), and asyncio switches Nagle's algorithm off (TCP_NODELAY) only on sockets
    whose protocol is ``IPPROTO_TCP`` (``asyncio.base_events._set_nodelay``). With Nagle on, the
    response body waits until the client has acknowledged the headers, which the client delays
    by up to 40 ms: every keep-alive response then takes 40 ms more (uvicorn issue #3149).

    Here the socket is made with ``IPPROTO_TCP``, so asyncio sets TCP_NODELAY on every accepted
    connection, in this process and in every worker (a socket sent to a worker keeps its
    protocol); TCP_NODELAY is also set on the listener itself, which Linux copies to the sockets
    it accepts, so an event loop that does not set it still gets it. Address family and
    ``SO_REUSEADDR`` as uvicorn does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


def run_uvicorn(
    app: FastAPI | str,
    sock: socket.socket,
    *,
    workers: int = 1,
    log_level: str = "info",
    timeout_graceful_shutdown: int | None = None,
) -> int:
    """Serve ``app`` with uvicorn on ``sock`` (see :func:`listening_socket`) in ``workers``
    processes; returns the exit status (0, or :data:`STARTUP_FAILURE`).

    ``app`` is an app, or the import string of a zero-argument factory (``"module:function"``),
    which more than one worker needs: each worker is a fresh process (``spawn``) that builds its
    own app. With one worker the app runs in this process. The benchmarks serve their apps
    through this function too (``bench/serve_app.py``), so they measure what ships.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if workers > 1 and not isinstance(app, str):
        raise ValueError("more than one worker needs the app as a factory's import string")
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        factory=isinstance(app, str),
        host=host,
        port=port,
        workers=workers,  # explicit, so that WEB_CONCURRENCY in the environment cannot change it
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
    )
    if workers > 1:
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
        failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
        return STARTUP_FAILURE if failed else 0
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE


def create_service_keys(settings: Settings) -> None:
    """Create the service's key files now, in one process: worker processes starting together
    would otherwise race to create them (one could read a file the other has not written yet)."""
    from vault.oauth.runtime import OAuthRuntime
    from vault.runtime import VaultRuntime

    rt = VaultRuntime.build(settings)
    try:
        OAuthRuntime.build(rt)
    finally:
        rt.engine.dispose()


def serve(
    settings: Settings,
    *,
    log_level: str = "info",
    timeout_graceful_shutdown: int | None = None,
) -> int:
    """Bind the address, migrate, seed the demo city if asked and the database is empty, then
    serve in ``settings.workers`` processes. Returns the exit status."""
    print(
        f"Civic Vault: data in {settings.data_dir.resolve()}, database {settings.resolved_database_url}"
    )
    sock = listening_socket(settings.host, settings.port)  # a port in use fails before seeding
    try:
        migrate(settings)
        if settings.demo_citizens > 0:
            seed(settings, only_if_empty=True)
        app: FastAPI | str
        if settings.workers > 1:
            create_service_keys(settings)
            app = APP_FACTORY
            print(
                f"  {settings.workers} worker processes (CIVIC_WORKERS). Sessions of the web apps"
                " (/app, /console), rate limits and sign-in throttles are kept per process"
                " (docs/configuration.md)"
            )
        else:
            from server.app import create_app

            app = create_app(settings)
            freeze_startup_heap()
        print(f"  serving on http://{settings.host}:{settings.port}  (API docs: /docs)")
        return run_uvicorn(
            app,
            sock,
            workers=settings.workers,
            log_level=log_level,
            timeout_graceful_shutdown=timeout_graceful_shutdown,
        )
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="civic-vault-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="migrate, seed the demo city if the database is empty, serve")
    sub.add_parser("migrate", help="bring the database schema up to date")
    seed_cmd = sub.add_parser("seed-demo", help="seed the demo city (CIVIC_DEMO_CITIZENS citizens)")
    seed_cmd.add_argument("--citizens", type=int, default=None)
    seed_cmd.add_argument("--force", action="store_true", help="seed even if citizens exist")
    bulk_cmd = sub.add_parser(
        "seed-bulk",
        help="seed a benchmark city of bulk citizens (bulk-0000001...); existing ones are skipped",
    )
    bulk_cmd.add_argument("--citizens", type=int, required=True)
    bulk_cmd.add_argument("--records", type=int, default=10, help="energy readings per citizen")
    bulk_cmd.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:
        if args.command == "serve":
            status = serve(settings)
        elif args.command == "migrate":
            migrate(settings)
        elif args.command == "seed-bulk":
            migrate(settings)
            seed_bulk(settings, args.citizens, args.records, args.seed)
        else:
            if args.citizens is not None:
                from dataclasses import replace

                settings = replace(settings, demo_citizens=args.citizens)
            migrate(settings)
            seed(settings, only_if_empty=not args.force)
    except CannotListen as exc:
        print(f"{exc} (CIVIC_HOST, CIVIC_PORT)", file=sys.stderr)
        return 1
    except OSError as exc:
        # A read-only or full data folder, a missing mount: say which setting to look at.
        print(
            f"cannot use the data folder CIVIC_DATA_DIR={settings.data_dir} "
            f"(database {settings.resolved_database_url}): {exc}",
            file=sys.stderr,
        )
        return 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
