"""Sign-in (OAuth2 password flow) and the signed-in officer."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api.deps import Caller, Conn, Ctx
from api.officers import authenticate

router = APIRouter(prefix="/api/v1", tags=["auth"])
log = logging.getLogger("giamsat.api")


class UserView(BaseModel):
    username: str
    role: Literal["commune", "province", "admin"]
    unit: str | None
    display_name: str | None = None


class TokenView(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
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
    return TokenView(access_token=ctx.tokens.issue(officer.username, officer.role),
                     expires_in=ctx.tokens.ttl_s,
                     user=UserView(username=officer.username, role=officer.role,
                                   unit=officer.unit, display_name=officer.display_name))


@router.get("/me", response_model=MeView)
def me(caller: Caller) -> MeView:
    """The signed-in officer and the units they may see."""
    o = caller.officer
    units = None if caller.units is None else sorted(caller.units)
    return MeView(username=o.username, role=o.role, unit=o.unit, display_name=o.display_name,
                  units=units)
