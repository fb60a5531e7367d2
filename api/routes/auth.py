"""Sign-in (OAuth2 password flow) and the signed-in officer."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api.deps import Caller, Conn, Ctx, oauth2, officer_from_token
from api.officers import Officer, authenticate
from api.tokens import TokenInvalid

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


@router.post("/auth/token", response_model=TokenView,
             responses={401: {"description": "wrong username or password"}})
def token(ctx: Ctx, conn: Conn,
          form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenView:
    """Exchange username and password (form fields) for a short-lived bearer token."""
    officer = authenticate(conn, form.username, form.password)
    if officer is None:
        ctx.metrics.logins.labels("failed").inc()
        raise HTTPException(401, "wrong username or password / sai tên đăng nhập hoặc mật khẩu",
                            headers={"WWW-Authenticate": "Bearer"})
    ctx.metrics.logins.labels("ok").inc()
    log.info("sign-in officer=%s", officer.username)
    return _token_view(ctx, officer, None)


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
