"""Sign-in (OAuth2 password flow) and the signed-in officer."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api import signin
from api.deps import ApiContext, Caller, Conn, Ctx, oauth2, officer_from_token
from api.officers import Officer, authenticate
from api.tokens import TokenInvalid
from api.wire import MAX_MS, MIN_MS, to_dt, to_ms

router = APIRouter(prefix="/api/v1", tags=["auth"])
log = logging.getLogger("giamsat.api")


class UserView(BaseModel):
    username: str
    role: Literal["commune", "province", "admin"]
    unit: str | None
    display_name: str | None = None
    chief: bool = False  # the commune unit's chief: signs the monthly assessment


class TokenView(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    session_expires_in: int  # s until this sign-in can no longer be refreshed
    user: UserView


class MeView(UserView):
    units: list[str] | None  # unit codes in scope; null = every unit (admin)


def throttle(ctx: ApiContext) -> signin.Throttle:
    s = ctx.settings
    return signin.Throttle(s.login_max_failures, s.login_max_failures_per_address,
                           s.login_failure_window_s)


@router.post("/auth/token", response_model=TokenView,
             responses={401: {"description": "wrong username or password"},
                        429: {"description": "too many failed sign-ins for this username or "
                                             "from this address: try again after Retry-After s"}})
def token(request: Request, ctx: Ctx, conn: Conn,
          form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenView:
    """Exchange username and password (form fields) for a short-lived bearer token. Failed
    sign-ins are audited and, past ``GIAMSAT_LOGIN_MAX_FAILURES`` for a username (or
    ``GIAMSAT_LOGIN_MAX_FAILURES_PER_ADDRESS`` from an address) within
    ``GIAMSAT_LOGIN_FAILURE_WINDOW_S``, refused with 429 and ``Retry-After``."""
    address = request.client.host if request.client else "unknown"
    now = ctx.now()
    wait = signin.retry_after(conn, throttle(ctx), form.username, address, now)
    if wait:
        ctx.metrics.logins.labels("throttled").inc()
        _fail(conn, form.username, address, now, "throttled")
        raise HTTPException(429, f"too many failed sign-ins: try again in {wait} s / đăng nhập "
                                 f"sai quá nhiều lần, thử lại sau {wait} giây",
                            headers={"Retry-After": str(wait)})
    officer = authenticate(conn, form.username, form.password)
    if officer is None:
        ctx.metrics.logins.labels("failed").inc()
        _fail(conn, form.username, address, now, "password")
        raise HTTPException(401, "wrong username or password / sai tên đăng nhập hoặc mật khẩu",
                            headers={"WWW-Authenticate": "Bearer"})
    ctx.metrics.logins.labels("ok").inc()
    signin.record(conn, officer.username, address, now, None)
    log.info("sign-in officer=%s", officer.username)
    return _token_view(ctx, officer, None)


def _fail(conn: Conn, username: str, address: str, now: datetime, reason: str) -> None:
    """Audit a failed attempt and commit it: the request's transaction rolls back on the
    error answer that follows."""
    signin.record(conn, username, address, now, reason)
    conn.commit()


@router.get("/auth/failures", responses={403: {"description": "admins only"}})
def sign_in_failures(
    ctx: Ctx, caller: Caller, conn: Conn,
    since: Annotated[int | None, Query(ge=MIN_MS, le=MAX_MS, description=(
        "failed at or after, epoch ms (default: the last 24 h)"))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    """Recent failed sign-ins, newest first (admin): when (ms), the username as typed and
    whether it names an officer, the client address, why (``password``, ``throttled``); and
    the usernames and addresses refused right now."""
    caller.require_admin()
    now = ctx.now()
    start = to_dt(since) if since is not None else now - timedelta(hours=24)
    out = signin.recent_failures(conn, throttle(ctx), now, start, limit)
    out["failures"] = [{**r, "at": to_ms(r["at"])} for r in out["failures"]]
    return {**out, "window_s": ctx.settings.login_failure_window_s,
            "max_failures": ctx.settings.login_max_failures,
            "max_failures_per_address": ctx.settings.login_max_failures_per_address}


@router.post("/auth/refresh", response_model=TokenView,
             responses={401: {"description": "no valid token, the account is disabled, the "
                                             "password changed or the sign-in is too old"}})
def refresh(ctx: Ctx, conn: Conn, token: Annotated[str | None, Depends(oauth2)]) -> TokenView:
    """Exchange a valid bearer token for a fresh one, for as long as the sign-in lasts
    (``GIAMSAT_SESSION_MAX_S`` after the password was given) and the password is unchanged;
    the officer's current role and unit are read again. The old token stays valid until it
    runs out."""
    officer = officer_from_token(ctx, conn, token)
    try:
        claims = ctx.tokens.claims(token or "")
    except TokenInvalid as exc:  # expired between the two reads
        raise _refused(f"{exc} / phiên đăng nhập đã hết hạn") from exc
    if claims.password_version is None:  # issued before tokens carried it
        raise _refused("this token cannot be refreshed: sign in again / vui lòng đăng nhập lại")
    if ctx.tokens.session_left_s(claims) <= 0:
        raise _refused(f"this sign-in is {ctx.tokens.session_max_s // 3600} h old: sign in "
                       "again / phiên làm việc đã hết, vui lòng đăng nhập lại")
    ctx.metrics.logins.labels("refresh").inc()
    return _token_view(ctx, officer, claims.auth_time)


def _refused(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _token_view(ctx: Ctx, officer: Officer, auth_time: int | None) -> TokenView:
    token = ctx.tokens.issue(officer.username, officer.role, auth_time, officer.password_version)
    claims, now = ctx.tokens.peek(token), ctx.clock().timestamp()
    return TokenView(access_token=token,
                     expires_in=max(0, int(claims.expires_at - now)),  # whole seconds, down
                     session_expires_in=max(0, ctx.tokens.session_left_s(claims)),
                     user=UserView(username=officer.username, role=officer.role,
                                   unit=officer.unit, display_name=officer.display_name,
                                   chief=officer.chief))


@router.get("/me", response_model=MeView)
def me(caller: Caller) -> MeView:
    """The signed-in officer and the units they may see."""
    o = caller.officer
    units = None if caller.units is None else sorted(caller.units)
    return MeView(username=o.username, role=o.role, unit=o.unit, display_name=o.display_name,
                  chief=o.chief, units=units)
