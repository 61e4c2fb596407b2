"""Reading a raw request body with a size limit (413 names the limit)."""

from __future__ import annotations

from fastapi import Request

from vault.errors import PayloadTooLarge


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than the limit of {limit} bytes; split it into smaller batches",
        details=[{"field": "body", "reason": f"larger than {limit} bytes", "limit_bytes": limit}],
    )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise too_large(limit)
        parts.append(part)
    return b"".join(parts)
