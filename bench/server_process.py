"""Starting a server (``bench.serve_app``) in a subprocess on a free loopback port, and always
stopping it.

The server is stopped when the ``with`` block ends (terminate, then kill after a grace period), at
interpreter exit if something slipped through, and, on Linux, by the kernel if this process dies
(``PR_SET_PDEATHSIG``). With more than one worker, uvicorn's supervisor stops its workers when it
is terminated; the server runs in a process group of its own, so that whatever is left of that
group afterwards (a worker orphaned by a killed supervisor) is killed too. Only processes started
here, and their process group, are ever signalled, by id.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

_live: set[subprocess.Popen[bytes]] = set()


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    """A port free on the loopback interface right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """``preexec_fn`` for children: the kernel sends them SIGTERM if this process dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of the process group ``pgid`` (the server's workers), if anything."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    if sys.platform != "win32":
        _kill_group(proc.pid)  # the server is its group's leader (start_new_session)
    _live.discard(proc)


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_live):
        with contextlib.suppress(Exception):
            _stop(proc, grace=3.0)


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


#: What uvicorn logs (level info) when a worker's app has started; one line per worker.
STARTUP_COMPLETE = "Application startup complete."

AppName = Literal["vault", "baseline", "latency-baseline"]


class ServerProcess:
    """``with ServerProcess("vault", env, log_dir) as server: ... server.url ...``

    ``app`` is ``"vault"`` (the real app, migrated first, served by ``server.cli.serve``),
    ``"baseline"`` or ``"latency-baseline"`` (bare FastAPI apps), each in ``workers`` uvicorn
    processes (``uvicorn_binds``: a bare app served by ``uvicorn.run`` as ``uvicorn --workers``
    serves it, a reference for the socket options; see ``bench.serve_app``). ``env`` replaces
    every ``CIVIC_*`` variable of this process's environment. With more
    than one worker the server counts as started once every worker has logged that its app has
    started (until then wrk's connections would all go to the first one up).
    """

    def __init__(
        self,
        app: AppName,
        env: dict[str, str],
        log_dir: Path,
        *,
        workers: int = 1,
        uvicorn_binds: bool = False,
        startup_timeout: float = 60.0,
        attempts: int = 3,
    ) -> None:
        self.app = app
        self.env = env
        self.workers = workers
        self.uvicorn_binds = uvicorn_binds
        suffix = "" if workers == 1 else f"-{workers}w"
        if uvicorn_binds:
            suffix += "-uvicorn-binds"
        self.log_path = log_dir / f"server-{app}{suffix}.log"
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _environment(self) -> dict[str, str]:
        # No CIVIC_* setting leaks in, and no OpenTelemetry exporter can be switched on by the
        # environment: the servers must not talk to anything but the benchmark on 127.0.0.1.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CIVIC_", "OTEL_", "FASTAPI_OTEL_"))
        }
        env.update(self.env)
        env["FASTAPI_OTEL_AUTO_CONFIGURE"] = "false"
        env["CIVIC_HOST"] = LOOPBACK
        env["CIVIC_PORT"] = str(self.port)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _workers_started(self, log_offset: int) -> int:
        try:
            with self.log_path.open("rb") as log:
                log.seek(log_offset)
                return log.read().decode(errors="replace").count(STARTUP_COMPLETE)
        except OSError:
            return 0

    def _ready(self, log_offset: int) -> bool:
        if not _healthy(self.port):
            return False
        return self.workers == 1 or self._workers_started(log_offset) >= self.workers

    def _start_once(self) -> bool:
        """True when healthy; False when the port was taken (try another); raises otherwise."""
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(
                f"--- starting {self.app} on port {self.port}, {self.workers} worker(s)\n".encode()
            )
            log.flush()
            log_offset = log.tell()
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.serve_app",
                    "--app",
                    self.app,
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    *(["--uvicorn-binds"] if self.uvicorn_binds else []),
                ],
                cwd=REPO_ROOT,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
                start_new_session=sys.platform != "win32",
            )
        _live.add(self._proc)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                _live.discard(self._proc)
                tail = self._log_tail()
                if "address already in use" in tail.lower():
                    return False
                raise ServerStartError(
                    f"the {self.app} server exited with code {self._proc.returncode} before it "
                    f"was ready; last lines of {self.log_path}:\n{tail}"
                )
            if self._ready(log_offset):
                return True
            time.sleep(0.1)
        _stop(self._proc)
        raise ServerStartError(
            f"the {self.app} server was not ready (/healthz, {self.workers} worker(s) started) "
            f"within {self.startup_timeout:.0f} s; last lines of {self.log_path}:\n"
            f"{self._log_tail()}"
        )

    def start(self) -> ServerProcess:
        for _ in range(self.attempts):
            if self._start_once():
                return self
        raise ServerStartError(f"could not find a free port for the {self.app} server")

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> ServerProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
