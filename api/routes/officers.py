"""Officer accounts, managed by admins."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Path
from pydantic import BaseModel, Field

from api.deps import Caller, Conn, Ctx, audit
from api.officers import create_officer, list_officers, update_officer

router = APIRouter(prefix="/api/v1", tags=["officers"])

Role = Literal["commune", "province", "admin"]


class OfficerCreate(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.-]{3,64}$")
    password: str = Field(min_length=8, max_length=200)
    role: Role
    unit: str | None = Field(None, max_length=64)
    display_name: str | None = Field(None, max_length=200)
    chief: bool = Field(False, description="the commune unit's chief (signs the monthly "
                                           "assessment); commune officers only")


class OfficerUpdate(BaseModel):
    """Fields to change; those left out stay as they are."""

    role: Role | None = None
    unit: str | None = Field(None, max_length=64)
    password: str | None = Field(None, min_length=8, max_length=200)
    display_name: str | None = Field(None, max_length=200)
    active: bool | None = None
    chief: bool | None = None


@router.get("/officers", responses={403: {"description": "admins only"}})
def get_officers(caller: Caller, conn: Conn) -> list[dict]:
    """Every officer account (admin)."""
    caller.require_admin()
    return [o.as_json() for o in list_officers(conn)]


@router.post("/officers", status_code=201,
             responses={403: {"description": "admins only"}, 409: {"description": "exists"}})
def post_officer(ctx: Ctx, caller: Caller, conn: Conn,
                 body: Annotated[OfficerCreate, Body()]) -> dict:
    """Create an officer account (admin); role commune|province needs a unit."""
    caller.require_admin()
    officer = create_officer(conn, body.username, body.password, body.role, body.unit,
                             display_name=body.display_name, chief=body.chief)
    audit(conn, ctx, caller, "officer.create", body.username,
          {"role": body.role, "unit": body.unit, "chief": body.chief})
    return officer.as_json()


@router.put("/officers/{username}", responses={403: {"description": "admins only"}})
def put_officer(username: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{3,64}$")],
                ctx: Ctx, caller: Caller, conn: Conn,
                body: Annotated[OfficerUpdate, Body()]) -> dict:
    """Change an officer's role, unit, password, name or active flag (admin)."""
    caller.require_admin()
    changes = body.model_dump(exclude_none=True)
    officer = update_officer(conn, username, **changes)
    if officer is None:
        raise HTTPException(404, f"no officer {username!r} / không có cán bộ")
    audit(conn, ctx, caller, "officer.update", username, {"fields": sorted(changes)})
    return officer.as_json()
