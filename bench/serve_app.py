"""Launcher for the HTTP benchmarks:
``python -m bench.serve_app --app vault|baseline|latency-baseline --port N [--workers W]``.

Every app is served through the product's own serving code (``server.cli``), so the benchmarks
measure what ships, with the same uvicorn settings on both sides of a ratio (W worker processes, no
access log, loopback only, the listening socket made by ``server.cli.listening_socket``):

* ``vault``: ``server.cli.serve`` itself, what ``civic-vault-server serve`` (``make run``) runs:
  migrate the database named by ``CIVIC_*``, then serve ``create_app`` in ``CIVIC_WORKERS=W``
  processes;
* ``baseline``: the bare FastAPI app of :mod:`bench.baseline_app`;
* ``latency-baseline``: the bare FastAPI app of :mod:`bench.latency_baseline_app`.

``--uvicorn-binds`` (bare apps only) serves the app as ``uvicorn --workers W`` does by itself
(``uvicorn.run`` with an import string: uvicorn binds the socket): not what ships, a reference that
shows what the product's socket options are worth (uvicorn issue #3149, see ``bench.api_latency``).
"""

from __future__ import annotations

import argparse
import os

LOOPBACK = "127.0.0.1"

#: The bare apps, as import strings of zero-argument factories (a worker process imports them).
BARE_APPS = {
    "baseline": "bench.baseline_app:create_baseline_app",
    "latency-baseline": "bench.latency_baseline_app:create_latency_baseline_app",
}

#: Log level of every benchmark server: ``info``, as ``make run``; the access log is off, so this
#: is a few lines at start-up, among them one "Application startup complete." per worker, which
#: ``bench.server_process`` waits for.
LOG_LEVEL = "info"
GRACEFUL_SHUTDOWN_S = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_app", description=__doc__)
    parser.add_argument("--app", choices=("vault", *BARE_APPS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--uvicorn-binds", action="store_true")
    args = parser.parse_args(argv)
    if args.uvicorn_binds and args.app == "vault":
        parser.error("--uvicorn-binds is for the bare apps only: the vault is served as shipped")

    from server.cli import listening_socket, run_uvicorn, serve
    from vault.settings import Settings

    if args.app == "vault":
        # The workers read their settings from the environment they inherit: set it, not a copy.
        os.environ.update(
            {
                "CIVIC_HOST": LOOPBACK,
                "CIVIC_PORT": str(args.port),
                "CIVIC_WORKERS": str(args.workers),
            }
        )
        return serve(
            Settings.from_env(), log_level=LOG_LEVEL, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S
        )
    if args.uvicorn_binds:
        import uvicorn

        uvicorn.run(
            BARE_APPS[args.app],
            factory=True,
            host=LOOPBACK,
            port=args.port,
            workers=args.workers,
            log_level=LOG_LEVEL,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        return 0
    sock = listening_socket(LOOPBACK, args.port)
    try:
        return run_uvicorn(
            BARE_APPS[args.app],
            sock,
            workers=args.workers,
            log_level=LOG_LEVEL,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    finally:
        sock.close()


if __name__ == "__main__":
    raise SystemExit(main())
