"""Request bodies, read with a size limit: a body larger than the limit is refused (413)
before it is all in memory, whether or not the client announced its length."""

from __future__ import annotations

from fastapi import Request

from meshbridge.errors import BadRequest, PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(length) > limit:
            raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
