"""Error answers: one JSON shape, :class:`~meshbridge.wire.messages.ErrorAnswer`, for all.

Every meshbridge error maps to a status here; anything else is a bug, answered with a bare
500 ``internal error`` while the traceback goes to the server's log. Messages are the errors'
own user-facing text: no stack trace, no SQL, no secret reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from meshbridge.errors import (
    BadRequest,
    Conflict,
    InvalidInput,
    MeshbridgeError,
    NotFound,
    PayloadTooLarge,
    Problem,
    StateError,
    StateLocked,
    StateUnavailable,
)
from meshbridge.wire.messages import ErrorAnswer, ErrorItem

log = logging.getLogger("meshbridge.api")


def error_body(message: str, problems: tuple[Problem, ...] = ()) -> dict[str, Any]:
    return ErrorAnswer.of(message, problems).to_json()


def respond(
    status: int,
    message: str,
    problems: tuple[Problem, ...] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(message, problems), status_code=status, headers=headers)


def internal_error() -> JSONResponse:
    return JSONResponse(ErrorAnswer.of("internal error").to_json(), status_code=500)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the one JSON shape."""

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return respond(422, str(exc), exc.problems)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        items = [ErrorItem(message=str(exc))] + [ErrorItem.of(p) for p in exc.problems]
        return JSONResponse(ErrorAnswer(errors=items).to_json(), status_code=409)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return respond(404, str(exc))

    @app.exception_handler(BadRequest)
    async def _bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return respond(400, str(exc))

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(_: Request, exc: PayloadTooLarge) -> JSONResponse:
        return respond(413, str(exc))

    @app.exception_handler(StateError)
    async def _state(_: Request, exc: StateError) -> JSONResponse:
        if isinstance(exc, StateLocked):
            return respond(503, "the store is busy: retry", headers={"Retry-After": "1"})
        if isinstance(exc, StateUnavailable):
            log.warning("state store unavailable: %s", exc)
            return respond(503, "the state store is unavailable: retry", headers={"Retry-After": "1"})
        log.error("state store error: %s", exc)
        return respond(503, "the state store is unavailable")

    @app.exception_handler(MeshbridgeError)
    async def _meshbridge(_: Request, exc: MeshbridgeError) -> JSONResponse:
        log.error("%s: %s", type(exc).__name__, exc)
        return respond(500, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        items = [
            ErrorItem(
                message=str(err.get("msg", "")),
                document="request",
                path=".".join(str(p) for p in err.get("loc", ())),
            )
            for err in exc.errors()
        ]
        answer = ErrorAnswer(errors=items) if items else ErrorAnswer.of("invalid request")
        return JSONResponse(answer.to_json(), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else {}
        return respond(exc.status_code, str(exc.detail), headers=headers)
