"""A tiny HTTP client for setting benchmarks up, on 127.0.0.1 only.

It uses ``http.client`` directly, so no proxy variable of the environment can send a request
anywhere but the loopback interface.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

LOOPBACK = "127.0.0.1"


class SetupError(RuntimeError):
    """The server refused a setup request (registration, sign-in, stream creation)."""


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    token: str | None = None,
    content_type: str = "application/json",
    timeout: float = 60.0,
) -> tuple[int, bytes]:
    headers = {"accept": "application/json"}
    if body is not None:
        headers["content-type"] = content_type
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def call_json(
    port: int,
    method: str,
    path: str,
    payload: Any = None,
    *,
    token: str | None = None,
    expect: int = 200,
) -> Any:
    """Send ``payload`` as JSON and return the decoded answer; :class:`SetupError` unless the
    status is ``expect``."""
    body = None if payload is None else json.dumps(payload).encode()
    status, answer = request(port, method, path, body, token=token)
    if status != expect:
        raise SetupError(f"{method} {path} answered {status} (expected {expect}): {answer[:500]!r}")
    return json.loads(answer) if answer else None
