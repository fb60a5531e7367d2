"""A bound on request bodies (``GIAMSAT_MAX_BODY_BYTES``): a larger one is answered 413 before
it is read into memory or parsed.

A declared ``Content-Length`` over the bound is refused at once; a body sent without one
(chunked) is counted as it arrives and refused when it passes the bound.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the bound: an HTTPException, so that
    FastAPI answers it as it is (413) from wherever the body was being read."""

    def __init__(self, limit: int):
        super().__init__(413, _message(limit))


def _message(limit: int) -> str:
    return (f"request body too large: at most {limit} bytes (GIAMSAT_MAX_BODY_BYTES) / "
            "dữ liệu gửi lên quá lớn")


class BodyLimit:
    """Pure ASGI middleware refusing request bodies over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": _message(self.max_bytes)}, status_code=413)(
                scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
