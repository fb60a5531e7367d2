"""Replay of a supervisee's period (issue 11): as it was (a self-check that the recorded
alerts are reproduced) or against proposed zones and permits (what if). Province and admin
roles only; nothing is stored or sent, the call itself is audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException

from alerts.decide.replay import parse_proposal, replay
from api.deps import Caller, Conn, Ctx, audit
from api.registry import SuperviseeId, supervisee

router = APIRouter(prefix="/api/v1", tags=["replay"])

MAX_PERIOD_MS = 366 * 86_400_000  # one call replays at most a year


@router.post("/supervisees/{sid}/replay")
def replay_period(sid: SuperviseeId, caller: Caller, conn: Conn, ctx: Ctx,
                  body: Annotated[dict[str, Any], Body(
                      description='{"from": ms, "to": ms, "zones": [...]?, "permits": [...]?}: '
                                  "with zones and/or permits (import format) a what-if run")]
                  ) -> dict[str, Any]:
    """Re-decide ``[from, to)`` from the stored fixes with the live engine; list the alerts
    that open and end, and (as it was) the differences from what was recorded."""
    if caller.officer.role not in ("province", "admin"):
        raise HTTPException(403, "replay is for province and admin roles / chỉ dành cho cấp "
                                 "tỉnh và quản trị")
    supervisee(conn, caller, sid)
    start, end = _period(body)
    try:
        zones, permits = parse_proposal(
            {k: body[k] for k in ("zones", "permits") if k in body}, sid)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    result = replay(conn, ctx.settings, sid, start, end, zones=zones, permits=permits)
    audit(conn, ctx, caller, "replay", sid, {"from": start, "to": end,
                                             "what_if": zones is not None or permits is not None})
    return result.as_json()


def _period(body: dict[str, Any]) -> tuple[int, int]:
    start, end = body.get("from"), body.get("to")
    for name, v in (("from", start), ("to", end)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 253402300799999:
            raise HTTPException(422, f"{name}: epoch ms between 0 and 253402300799999")
    assert isinstance(start, int) and isinstance(end, int)
    if not 0 < end - start <= MAX_PERIOD_MS:
        raise HTTPException(422, "to must be after from, by at most 366 days")
    return start, end
