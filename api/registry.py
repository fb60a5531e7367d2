"""What the registry routes share at the API's edge: path parameters, the scoped supervisee
lookup, and a registry refusal as a 422. Every write and every read of zones, permits, devices
and units goes through the ``registry`` package (the same writers as the importer)."""

from __future__ import annotations

import logging
from typing import Annotated

import psycopg
from fastapi import HTTPException, Path
from psycopg.rows import dict_row

import registry
from api.errors import Problem
from api.scope import Scope
from protocol import DEVICE_ID_PATTERN

log = logging.getLogger("giamsat.api")

SuperviseeId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$",
                                   description="supervisee id")]
DeviceId = Annotated[str, Path(pattern=f"^{DEVICE_ID_PATTERN}$", description="device id")]


def bump_registry(conn: psycopg.Connection) -> None:
    """Tell the running pipeline to reload zones, permits and devices (``registry.bump``)."""
    registry.bump(conn)


def supervisee(conn: psycopg.Connection, caller: Scope, sid: str) -> dict:
    """The supervisee row if the caller may see it; 404 otherwise (never a hint it exists)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM supervisees WHERE id = %s", (sid,)).fetchone()
    if row is None or not caller.allows(row["unit"]):
        raise HTTPException(404, f"no supervisee {sid!r} in your scope / không có đối tượng")
    return row


def refused(exc: registry.ChangeRefused) -> Problem:
    """A change the registry refused, as a 422 naming its rule."""
    return Problem(422, f"refused, rule {exc.rule}: {exc.message}", rule=exc.rule, path=exc.path)
