"""Every bad request is a 4xx that says what is wrong, never a 500.

Bodies are ``{"detail": <message or list>, ...}`` as FastAPI's own; validation errors list each
bad field with its path (``loc``) and, for GeoJSON, the JSON path of the bad part.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import errors as pgerr

from api.officers import OfficerError

log = logging.getLogger("giamsat.api")


class Problem(Exception):
    """A domain error raised by a route: status, message, and optional JSON path / rule."""

    def __init__(self, status: int, message: str, *, path: str | None = None,
                 rule: str | None = None, citation: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.path = path
        self.rule = rule
        self.citation = citation  # the law behind ``rule``, when it has one

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detail": self.message}
        if self.path is not None:
            out["path"] = self.path
        if self.rule is not None:
            out["rule"] = self.rule
        if self.citation is not None:
            out["citation"] = self.citation
        return out


def _field_path(loc: tuple | list) -> str:
    """('body', 'zones', 0, 'kind') -> 'body.zones[0].kind'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for e in exc.errors():
        errors.append({"loc": list(e.get("loc", ())), "field": _field_path(e.get("loc", ())),
                       "msg": e.get("msg", "invalid"), "type": e.get("type", "value_error")})
    summary = "; ".join(f"{e['field']}: {e['msg']}" for e in errors[:5])
    return JSONResponse({"detail": errors, "message": f"invalid request: {summary}"},
                        status_code=422)


async def _problem(request: Request, exc: Problem) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _officer(request: Request, exc: OfficerError) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "field": exc.field},
                        status_code=409 if exc.conflict else 422)


# SQLSTATE classes that are the request's fault, not the server's.
_PG_STATUS: list[tuple[type[Exception], int, str]] = [
    (pgerr.UniqueViolation, 409, "conflicts with an existing record"),
    (pgerr.ForeignKeyViolation, 409, "refers to a record that does not exist or is still in use"),
    (pgerr.CheckViolation, 422, "breaks a rule of the registry"),
    (pgerr.NotNullViolation, 422, "misses a required value"),
    (pgerr.ExclusionViolation, 409, "conflicts with an existing record"),
    (psycopg.DataError, 422, "holds a value out of range or of the wrong form"),
    (pgerr.QueryCanceled, 503, "took too long; narrow the request"),
]


async def _database(request: Request, exc: psycopg.Error) -> JSONResponse:
    for kind, status, message in _PG_STATUS:
        if isinstance(exc, kind):
            diag = getattr(exc, "diag", None)
            where = getattr(diag, "constraint_name", None) or getattr(diag, "column_name", None)
            detail = f"the request {message}" + (f" ({where})" if where else "")
            return JSONResponse({"detail": detail}, status_code=status)
    log.exception("database error on %s", request.url.path)
    return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(OfficerError, _officer)
    app.add_exception_handler(psycopg.Error, _database)
