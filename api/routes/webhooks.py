"""Webhooks per unit (contract §3: each unit's webhooks get its alert changes, signed, retried
until delivered): register one (the secret is generated and shown once), switch it off or on,
send a signed test delivery, and read its delivery log.

Province officers manage the webhooks of the units in their scope, admins all; commune
officers may not (a webhook sends the unit's alerts out of the service). Every change and every
test is audited.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Annotated, Any

import httpx
import orjson
import psycopg
from fastapi import APIRouter, Body, HTTPException, Path, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, field_validator

from alerts.delivery.base import Outcome, Outgoing
from alerts.delivery.webhook import WebhookChannel
from api.deps import Caller, Conn, Ctx, audit
from api.errors import Problem
from api.scope import Scope
from api.wire import to_ms

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

UnitCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="unit code")]
WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1, description="webhook id")]


class WebhookIn(BaseModel):
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s/]+[^\s]*$",
                     description="http(s) URL the unit's alert changes are POSTed to")

    @field_validator("url")
    @classmethod
    def _postable(cls, v: str) -> str:
        """A URL httpx can send to: a host that encodes (IDNA), a valid port."""
        try:
            url = httpx.URL(v)
            url.host.encode("idna")
            _ = url.port
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise ValueError(f"not a usable http(s) URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("an http:// or https:// URL with a host is needed")
        if url.port is not None and not 0 < url.port < 65536:
            raise ValueError(f"port {url.port} is out of range")
        return v


def _manager(caller: Scope) -> None:
    if caller.officer.role not in ("province", "admin"):
        raise HTTPException(403, "province or admin role required / cần quyền cấp tỉnh")


def _webhook_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "unit": row["unit"], "url": row["url"], "enabled": row["enabled"],
            "created_at": to_ms(row["created_at"]), "created_by": row["created_by"],
            "disabled_at": to_ms(row["disabled_at"])}


def _visible(conn: psycopg.Connection, caller: Scope, webhook_id: int) -> dict[str, Any]:
    _manager(caller)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM unit_webhooks WHERE id = %s", (webhook_id,)).fetchone()
    if row is None or not caller.allows(row["unit"]):
        raise HTTPException(404, f"no webhook {webhook_id} in your scope / không có webhook")
    return row


def _unit_in_scope(conn: psycopg.Connection, caller: Scope, code: str) -> None:
    _manager(caller)
    exists = conn.execute("SELECT 1 FROM units WHERE code = %s", (code,)).fetchone()
    if exists is None or not caller.allows(code):
        raise HTTPException(404, f"no unit {code!r} in your scope / không có đơn vị")


@router.get("/units/{code}/webhooks",
            responses={403: {"description": "commune officers"}, 404: {"description": "scope"}})
def list_webhooks(code: UnitCode, caller: Caller, conn: Conn) -> list[dict]:
    """The unit's webhooks (never their secrets)."""
    _unit_in_scope(conn, caller, code)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM unit_webhooks WHERE unit = %s ORDER BY id",
                           (code,)).fetchall()
    return [_webhook_json(r) for r in rows]


@router.post("/units/{code}/webhooks", status_code=201,
             responses={403: {"description": "commune officers"}, 404: {"description": "scope"},
                        409: {"description": "this URL is already registered for the unit"}})
def create_webhook(code: UnitCode, ctx: Ctx, caller: Caller, conn: Conn,
                   body: Annotated[WebhookIn, Body()]) -> dict:
    """Register a webhook; the answer holds its signing ``secret``, shown this once only."""
    _unit_in_scope(conn, caller, code)
    secret = secrets.token_urlsafe(32)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO unit_webhooks (unit, url, secret, created_at, created_by) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (unit, url) DO NOTHING RETURNING *",
            (code, body.url, secret, ctx.now(), caller.username)).fetchone()
    if row is None:
        raise Problem(409, "this URL is already registered for the unit / URL đã đăng ký")
    audit(conn, ctx, caller, "webhook.create", code, {"webhook_id": row["id"], "url": body.url})
    return {**_webhook_json(row), "secret": secret}


def _switch(conn, ctx, caller, webhook_id: int, enabled: bool) -> dict:
    _visible(conn, caller, webhook_id)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("UPDATE unit_webhooks SET enabled = %s, disabled_at = CASE WHEN %s "
                          "THEN NULL ELSE %s END WHERE id = %s RETURNING *",
                          (enabled, enabled, ctx.now(), webhook_id)).fetchone()
    audit(conn, ctx, caller, "webhook.enable" if enabled else "webhook.disable", row["unit"],
          {"webhook_id": webhook_id})
    return _webhook_json(row)


@router.post("/webhooks/{webhook_id}/disable", responses={404: {"description": "scope"}})
def disable_webhook(webhook_id: WebhookId, ctx: Ctx, caller: Caller, conn: Conn) -> dict:
    """Stop sending to it (pending deliveries fail and wait; enabling resumes them)."""
    return _switch(conn, ctx, caller, webhook_id, False)


@router.post("/webhooks/{webhook_id}/enable", responses={404: {"description": "scope"}})
def enable_webhook(webhook_id: WebhookId, ctx: Ctx, caller: Caller, conn: Conn) -> dict:
    """Send to it again."""
    return _switch(conn, ctx, caller, webhook_id, True)


@router.post("/webhooks/{webhook_id}/test", responses={404: {"description": "scope"}})
def test_webhook(webhook_id: WebhookId, ctx: Ctx, caller: Caller, conn: Conn) -> dict:
    """POST one signed test message (``{"type": "test", ...}``, the same headers as an alert
    change) now and say what the receiver answered. Recorded in the audit log."""
    row = _visible(conn, caller, webhook_id)
    now_ms = int(ctx.now().timestamp() * 1000)
    body = orjson.dumps({"type": "test", "unit": row["unit"], "webhook_id": webhook_id,
                         "sent_at": now_ms, "sent_by": caller.username,
                         "message_vi": "Tin thử từ giamsat", "message_en": "giamsat test"})
    item = Outgoing(delivery_id=0, alert_id=0, target=str(webhook_id),
                    idempotency_key=f"test-{uuid.uuid4().hex}", body=body, attempt=1,
                    url=row["url"], secret=row["secret"])
    channel = WebhookChannel(timeout_s=ctx.settings.webhook_timeout_s,
                             clock_ms=lambda: time.time_ns() // 1_000_000)
    try:
        outcome = channel.send([item])[0]
    except (UnicodeError, ValueError) as exc:  # a URL stored before it was checked
        outcome = Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        channel.close()
    result = {"ok": outcome.ok, "status_code": outcome.status_code, "error": outcome.error,
              "duration_ms": round(outcome.duration_ms, 1)}
    audit(conn, ctx, caller, "webhook.test", row["unit"], {"webhook_id": webhook_id, **result})
    return result


@router.get("/webhooks/{webhook_id}/deliveries", responses={404: {"description": "scope"}})
def webhook_deliveries(webhook_id: WebhookId, caller: Caller, conn: Conn,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    """The delivery log, newest first: each alert change sent to it (attempts, delivered or
    the last error), and the test deliveries."""
    row = _visible(conn, caller, webhook_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT d.id, d.alert_id, d.created_at, d.attempts, d.delivered_at, d.last_error, "
            "d.next_attempt_at, (SELECT a.status_code FROM delivery_attempts a WHERE "
            "a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1) AS last_status "
            "FROM deliveries d WHERE d.channel = 'webhook' AND d.target = %s "
            "ORDER BY d.id DESC LIMIT %s", (str(webhook_id), limit)).fetchall()
        tests = cur.execute(
            "SELECT at, actor, params FROM audit_log WHERE action = 'webhook.test' AND "
            "subject = %s AND params->>'webhook_id' = %s ORDER BY id DESC LIMIT %s",
            (row["unit"], str(webhook_id), limit)).fetchall()
    deliveries = [{**r, **{k: to_ms(r[k]) for k in ("created_at", "delivered_at",
                                                    "next_attempt_at")}} for r in rows]
    return {"webhook": _webhook_json(row), "deliveries": deliveries,
            "tests": [{"at": to_ms(t["at"]), "by": t["actor"], **t["params"]} for t in tests]}
