"""What the numbers were measured on: cores, CPU model, versions, load, file system."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("polars", "opendp", "fastapi", "starlette", "uvicorn", "pynacl", "sqlalchemy")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def filesystem_of(path: Path) -> str:
    """The file system type of the mount holding ``path`` (tmpfs makes fsync free: worth knowing)."""
    try:
        resolved = str(path.resolve())
        best, kind = "", "unknown"
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, parts[2]
        return f"{kind} ({best})" if best else kind
    except OSError:
        return "unknown"


def wrk_version() -> str | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0].removeprefix("wrk ").strip() if text else "unknown"


def http_stack() -> str:
    """What uvicorn picks with loop="auto", http="auto" (uvloop and httptools if installed)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {_version('uvicorn')} with {loop} + {http}, 1 worker"


def machine_info(tmp: Path) -> dict[str, Any]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({name: _version(name) for name in _PACKAGES})
    versions["wrk"] = wrk_version()
    return {
        "cpu": {"cores": os.cpu_count(), "usable_cores": usable_cores(), "model": cpu_model()},
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python_executable": sys.executable,
        "versions": versions,
        "http_stack": http_stack(),
        "tmp_filesystem": filesystem_of(tmp),
        "loadavg_start": loadavg(),
        "loadavg_end": None,
    }
