"""``civic-vault-server serve`` with ``CIVIC_WORKERS``: every connection it accepts has Nagle's
algorithm off (TCP_NODELAY), with one worker process and with two.

Why it matters: with ``--workers N`` uvicorn binds the listening socket itself with protocol 0,
accepted connections copy that 0, and asyncio then never sets TCP_NODELAY on them; every response
body on a keep-alive connection waits ~40 ms for the client's delayed acknowledgement (uvicorn
issue #3149, ``bench/api_latency.py`` measures it). ``server.cli.listening_socket`` makes the socket
itself.

How it is checked, without mocks: the shipped entry point (``server.cli.main(["serve"])``) runs in a
child process on loopback; the test opens a keep-alive connection and sends two requests on it,
finds the server-side socket of that connection in the server's processes (``/proc/net/tcp`` gives
its inode, ``/proc/<pid>/fd`` the process and descriptor holding it), copies that descriptor into
this process with ``pidfd_getfd`` (Linux 5.6+; allowed because the server is this process's
descendant) and asks the kernel for its TCP_NODELAY option. Before the fix the two-worker case
reads 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.cli import listening_socket, main
from vault.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture (the generic syscall table)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux /proc and pidfd_getfd")


# --------------------------------------------------------------------------------------------------
# The settings and the socket
# --------------------------------------------------------------------------------------------------


def test_civic_workers_defaults_to_one_and_must_be_positive() -> None:
    assert Settings.from_env({}).workers == 1
    assert Settings.from_env({"CIVIC_WORKERS": ""}).workers == 1
    assert Settings.from_env({"CIVIC_WORKERS": "3"}).workers == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(SettingsError, match="CIVIC_WORKERS"):
            Settings.from_env({"CIVIC_WORKERS": bad})


def test_the_listening_socket_is_tcp_with_nodelay_and_passes_it_on() -> None:
    listener = listening_socket(LOOPBACK, 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP  # what asyncio checks before setting NODELAY
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        listener.listen()
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()  # a plain accept: no event loop sets anything here
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()


def test_a_port_in_use_stops_serve_before_it_touches_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        monkeypatch.setenv("CIVIC_HOST", LOOPBACK)
        monkeypatch.setenv("CIVIC_PORT", str(taken.getsockname()[1]))
        monkeypatch.setenv("CIVIC_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("CIVIC_DEMO_CITIZENS", "0")
        assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert "cannot listen on" in err and "CIVIC_PORT" in err
    assert not (tmp_path / "data" / "civic.db").exists()


# --------------------------------------------------------------------------------------------------
# The shipped server in a child process
# --------------------------------------------------------------------------------------------------


@dataclass
class Served:
    port: int
    pid: int  # the server's process, leader of its own process group


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _group(leader: int) -> list[int]:
    """Every process in the process group ``leader`` (the server and its workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[2]) == leader:
                    pids.append(int(entry))
    return pids


def _workers_started(log: Path) -> int:
    return log.read_text(errors="replace").count("Application startup complete.")


@contextlib.contextmanager
def served(tmp_path: Path, workers: int) -> Iterator[Served]:
    """``civic-vault-server serve`` with ``CIVIC_WORKERS=workers``, until every worker is up."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIVIC_", "OTEL_"))}
    env.update(
        {
            "CIVIC_HOST": LOOPBACK,
            "CIVIC_PORT": str(port),
            "CIVIC_WORKERS": str(workers),
            "CIVIC_DATA_DIR": str(tmp_path / "data"),
            "CIVIC_DEMO_CITIZENS": "0",
            "CIVIC_KDF_PROFILE": "min",
            "FASTAPI_OTEL_AUTO_CONFIGURE": "false",
            "PYTHONPATH": str(REPO),
        }
    )
    log_path = tmp_path / "served.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from server.cli import main; raise SystemExit(main(['serve']))",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers share its process group: all are stopped below
        )
    try:
        deadline = time.monotonic() + 120
        while _workers_started(log_path) < workers:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield Served(port, proc.pid)
        assert proc.poll() is None, "the server died"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind, if any


def _server_socket_inode(server_port: int, client_port: int) -> str:
    """The inode of the server-side socket of the connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local = int(fields[1].rsplit(":", 1)[1], 16)
        remote = int(fields[2].rsplit(":", 1)[1], 16)
        if (local, remote) == (server_port, client_port):
            return fields[9]
    raise AssertionError(f"no server-side socket for the connection from port {client_port}")


def _holder(leader: int, inode: str) -> tuple[int, int]:
    """The (pid, fd) in the server's process group that holds the socket ``inode``."""
    for pid in _group(leader):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid, int(fd)
    raise AssertionError(f"no process of the server holds socket {inode}")


def _nodelay_of(pid: int, fd: int) -> int:
    """TCP_NODELAY of descriptor ``fd`` of process ``pid``, read from a copy (``pidfd_getfd``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pidfd = os.pidfd_open(pid)
    try:
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"pidfd_getfd: {os.strerror(errno)}")
    finally:
        os.close(pidfd)
    with socket.socket(fileno=copy) as sock:  # closing the copy leaves the server's one open
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.http
@pytest.mark.parametrize("workers", [1, 2])
def test_served_keep_alive_connections_have_tcp_nodelay(tmp_path: Path, workers: int) -> None:
    with served(tmp_path, workers) as server:
        processes = _group(server.pid)
        conn = http.client.HTTPConnection(LOOPBACK, server.port, timeout=30)
        try:
            for _ in range(2):  # the second request is the one Nagle would hold up
                conn.request("GET", "/v1/stream-types")
                response = conn.getresponse()
                assert response.status == 200
                assert b"energy.consumption" in response.read()
            assert conn.sock is not None
            client_port = conn.sock.getsockname()[1]
            pid, fd = _holder(server.pid, _server_socket_inode(server.port, client_port))
            if workers > 1:
                # Served by a worker process, not the supervisor; the workers all run.
                assert pid != server.pid
                assert len(processes) >= workers + 1
            else:
                assert pid == server.pid
            assert _nodelay_of(pid, fd) == 1, (
                f"the connection accepted by process {pid} has Nagle's algorithm on"
            )
        finally:
            conn.close()
