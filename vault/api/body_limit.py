"""ASGI middleware: refuse any request body over the configured limit with 413, naming the limit,
and any body that does not arrive within the read timeout with 408 (a client sending a byte now
and then must not hold the request, and what it buffered, for ever)."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, limit: int, read_timeout: float | None = None) -> None:
        self.app = app
        self.limit = limit
        #: seconds for the whole body to arrive, from the first time the app reads it
        self.read_timeout = read_timeout

    def _response_body(self) -> bytes:
        return json.dumps(
            {
                "code": "payload_too_large",
                "message": f"the request body is larger than the limit of {self.limit} bytes",
                "details": [{"field": "body", "reason": "too large", "limit_bytes": self.limit}],
            }
        ).encode()

    def _timeout_body(self) -> bytes:
        return json.dumps(
            {
                "code": "request_timeout",
                "message": f"the request body did not arrive within {self.read_timeout:g} seconds",
                "details": [
                    {"field": "body", "reason": "too slow", "timeout_seconds": self.read_timeout}
                ],
            }
        ).encode()

    async def _reject(self, send: Send, status: int = 413) -> None:
        body = self._response_body() if status == 413 else self._timeout_body()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._reject(send)
                return
        seen = 0
        started = False
        deadline: float | None = None
        complete = False
        failed: int | None = None  # 413 or 408 once the body broke a limit

        async def limited_receive() -> Message:
            nonlocal seen, deadline, complete, failed
            if complete or self.read_timeout is None:
                message = await receive()
            else:
                now = asyncio.get_running_loop().time()
                deadline = now + self.read_timeout if deadline is None else deadline
                try:
                    # timeout_at, not wait_for: wait_for wraps every read in a task of its own
                    # (Python 3.11), an extra turn of the event loop for each request body.
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    failed = 408
                    raise _TooSlow from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    failed = 413
                    raise _TooLarge
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if failed is not None:
                # The app answered the broken read itself (FastAPI turns any error while reading a
                # JSON body into 400 "error parsing the body"): answer with the real reason.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send, failed)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (_TooLarge, _TooSlow):
            if not started:
                await self._reject(send, failed or 413)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"BodySizeLimit(limit={self.limit}, read_timeout={self.read_timeout})"
