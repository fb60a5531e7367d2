"""What every request needs: the app's context, a pooled connection, the signed-in officer.

A request's connection is one transaction: committed when the endpoint returns, rolled back
when it raises, and given back before the response is sent (FastAPI's ``scope="function"``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import OAuth2PasswordBearer
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from api.metrics import ApiMetrics
from api.officers import Officer, get_officer
from api.scope import Scope
from api.stream import AlertStream
from api.tokens import TokenInvalid, Tokens
from config.settings import Settings
from geofence.policy import PolicyTable

log = logging.getLogger("giamsat.api")

STATEMENT_TIMEOUT = "30s"  # no API query may hold a connection longer


def _configure(conn: psycopg.Connection) -> None:
    conn.execute(f"SET TIME ZONE 'UTC'; SET statement_timeout = '{STATEMENT_TIMEOUT}'")
    conn.commit()


@dataclass
class ApiContext:
    """Built once by ``create_app``; everything a route needs beyond the request."""

    settings: Settings
    db_url: str
    clock: Callable[[], datetime]
    tokens: Tokens
    metrics: ApiMetrics
    readiness: Callable[[], str | None] | None = None
    policies: PolicyTable | None = None  # sentence policies, court thresholds
    stream: AlertStream | None = None  # the live alert stream's listener
    downlink: Any = None  # api.downlink.Downlink: the MQTT publisher of commands
    evidence_key: str = ""  # signs evidence manifests (the token signing key)
    keepalive_s: float = 15.0  # SSE keepalive comment interval
    pool_max: int = 8
    _pool: ConnectionPool | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pool(self) -> ConnectionPool:
        """The connection pool, opened on first use (so an app that never serves a request,
        or a test transport that skips the lifespan, still works)."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    pool = ConnectionPool(self.db_url, min_size=1, max_size=self.pool_max,
                                          configure=_configure, open=False, timeout=10,
                                          name="giamsat-api")
                    pool.open()
                    self._pool = pool
        return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def now(self) -> datetime:
        return self.clock()


def context(request: Request) -> ApiContext:
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(context)]


def _connection(ctx: Ctx) -> Iterator[psycopg.Connection]:
    with ctx.pool.connection() as conn:
        yield conn


Conn = Annotated[psycopg.Connection, Depends(_connection, scope="function")]

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)

_UNAUTHORISED = {"WWW-Authenticate": "Bearer"}


def officer_from_token(ctx: ApiContext, conn: psycopg.Connection, token: str | None) -> Officer:
    if not token:
        raise HTTPException(401, "not signed in: send a bearer token / chưa đăng nhập",
                            headers=_UNAUTHORISED)
    try:
        claims = ctx.tokens.claims(token)
    except TokenInvalid as exc:  # a fixed text: never the token library's words
        log.debug("bearer token refused: %s", exc.reason)
        raise HTTPException(401, f"{exc} / phiên đăng nhập không hợp lệ hoặc đã hết hạn",
                            headers=_UNAUTHORISED) from exc
    officer = get_officer(conn, claims.username)
    if officer is None or not officer.active:
        raise HTTPException(401, "this account is disabled / tài khoản đã bị khóa",
                            headers=_UNAUTHORISED)
    if claims.password_version not in (None, officer.password_version):
        raise HTTPException(401, "the password was changed since this sign-in: sign in again / "
                                 "mật khẩu đã được đổi, vui lòng đăng nhập lại",
                            headers=_UNAUTHORISED)
    return officer


def _caller(ctx: Ctx, conn: Conn, token: Annotated[str | None, Depends(oauth2)]) -> Scope:
    return Scope.of(conn, officer_from_token(ctx, conn, token))


def _stream_caller(ctx: Ctx, conn: Conn, token: Annotated[str | None, Depends(oauth2)],
                   access_token: Annotated[str | None, Query(
                       description="bearer token, for EventSource clients that cannot "
                                   "set headers")] = None) -> Scope:
    return Scope.of(conn, officer_from_token(ctx, conn, token or access_token))


def _stream_expiry(ctx: Ctx, token: Annotated[str | None, Depends(oauth2)],
                   access_token: Annotated[str | None, Query()] = None) -> float:
    """When the stream's token runs out (epoch s): the stream ends then. Runs after
    ``_stream_caller`` has verified the token."""
    return float(ctx.tokens.peek(token or access_token or "").expires_at)


Caller = Annotated[Scope, Depends(_caller)]
StreamCaller = Annotated[Scope, Depends(_stream_caller)]
StreamExpiry = Annotated[float, Depends(_stream_expiry)]


def audit(conn: psycopg.Connection, ctx: ApiContext, who: Scope, action: str,
          subject: str | None, params: dict[str, Any] | None = None) -> None:
    """Append to the audit log in the request's transaction: who, what, which, when, how."""
    conn.execute("INSERT INTO audit_log (at, actor, action, subject, params) "
                 "VALUES (%s, %s, %s, %s, %s)",
                 (ctx.now(), who.username, action, subject, Jsonb(params or {})))
