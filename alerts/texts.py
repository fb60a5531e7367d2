"""Bilingual alert messages (``message_vi``, ``message_en``) for officers.

The texts name ids, never personal data: the receiving unit looks the person up in its
registry. Vietnamese is the officers' language; English is for integrators.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# purpose of an inclusion zone -> (vi, en) name of the area the person must stay in
_INCLUSION_AREA = {
    "residence": ("khu vực cư trú", "the residence area"),
    "curfew": ("nơi cư trú", "the residence"),
}
# purpose of an exclusion zone -> (vi, en) name of the area the person must keep out of
_EXCLUSION_AREA = {
    "protection": ("khu vực bảo vệ bị hại", "the victim-protection area"),
    "ban": ("địa phương bị cấm cư trú", "a banned locality"),
}


def _zone(ctx: Mapping[str, Any]) -> tuple[str, str]:
    z = ctx.get("zone_id")
    return (f" (vùng {z})", f" (zone {z})") if z else ("", "")


def _distance(ctx: Mapping[str, Any]) -> tuple[str, str]:
    d = ctx.get("distance_m")
    if d is None:
        return "", ""
    return f", cách ranh giới {abs(float(d)):.0f} m", f", {abs(float(d)):.0f} m from the boundary"


def _area(c: Mapping[str, Any], areas: Mapping[str, tuple[str, str]], usual: str,
          other: tuple[str, str], vi_verb: str, en_verb: str) -> tuple[str, str]:
    vi_area, en_area = areas.get(c.get("purpose") or usual, other)
    zv, ze = _zone(c)
    dv, de = _distance(c)
    return (f"Đối tượng {c['supervisee_id']} {vi_verb} {vi_area}{zv}{dv}.",
            f"Supervisee {c['supervisee_id']} {en_verb} {en_area}{ze}{de}.")


def _zone_exit(c: Mapping[str, Any]) -> tuple[str, str]:
    return _area(c, _INCLUSION_AREA, "residence", ("khu vực được phép", "the permitted area"),
                 "ra khỏi", "left")


def _zone_enter(c: Mapping[str, Any]) -> tuple[str, str]:
    return _area(c, _EXCLUSION_AREA, "ban", ("khu vực cấm", "a prohibited area"),
                 "đi vào", "entered")


def _curfew(c: Mapping[str, Any]) -> tuple[str, str]:
    zv, ze = _zone(c)
    dv, de = _distance(c)
    return (f"Đối tượng {c['supervisee_id']} không có mặt tại nơi cư trú trong khung giờ "
            f"bắt buộc{zv}{dv}.",
            f"Supervisee {c['supervisee_id']} is away from the residence during curfew "
            f"hours{ze}{de}.")


def _permit_overrun(c: Mapping[str, Any]) -> tuple[str, str]:
    zv, ze = _zone(c)
    return (f"Đối tượng {c['supervisee_id']} vẫn ở ngoài nơi cư trú khi giấy phép vắng mặt "
            f"đã hết hạn{zv}.",
            f"Supervisee {c['supervisee_id']} is still away from the residence after the "
            f"permit ended{ze}.")


def _minutes(c: Mapping[str, Any], key: str) -> int:
    return max(1, int(c.get(key) or 0) // 60)


def _device_offline(c: Mapping[str, Any]) -> tuple[str, str]:
    m = _minutes(c, "after_s")
    return (f"Thiết bị {c['device_id']} của đối tượng {c['supervisee_id']} mất kết nối "
            f"hơn {m} phút.",
            f"Device {c['device_id']} of supervisee {c['supervisee_id']} has sent nothing "
            f"for over {m} min.")


def _gnss_lost(c: Mapping[str, Any]) -> tuple[str, str]:
    m = _minutes(c, "after_s")
    return (f"Thiết bị {c['device_id']} của đối tượng {c['supervisee_id']} không xác định "
            f"được vị trí hơn {m} phút.",
            f"Device {c['device_id']} of supervisee {c['supervisee_id']} has had no usable "
            f"position fix for over {m} min.")


def _strap(c: Mapping[str, Any]) -> tuple[str, str]:
    return (f"Cảnh báo tháo/cắt vòng đeo: thiết bị {c['device_id']} của đối tượng "
            f"{c['supervisee_id']} báo dây đeo bị mở.",
            f"Tamper: the strap of device {c['device_id']} of supervisee "
            f"{c['supervisee_id']} is open.")


def _case(c: Mapping[str, Any]) -> tuple[str, str]:
    return (f"Cảnh báo can thiệp thiết bị: vỏ thiết bị {c['device_id']} của đối tượng "
            f"{c['supervisee_id']} bị mở.",
            f"Tamper: the case of device {c['device_id']} of supervisee "
            f"{c['supervisee_id']} is open.")


def _battery(c: Mapping[str, Any], vi_state: str, en_state: str) -> tuple[str, str]:
    b = c.get("batt")
    bv, be = ("", "") if b is None else (f" ({float(b):.0f} %)", f" ({float(b):.0f} %)")
    return (f"Pin thiết bị {c['device_id']} của đối tượng {c['supervisee_id']} {vi_state}{bv}.",
            f"The battery of device {c['device_id']} of supervisee {c['supervisee_id']} is "
            f"{en_state}{be}.")


def _jamming(c: Mapping[str, Any]) -> tuple[str, str]:
    return (f"Phát hiện gây nhiễu tín hiệu định vị (GNSS) tại thiết bị {c['device_id']} của "
            f"đối tượng {c['supervisee_id']}.",
            f"GNSS jamming detected at device {c['device_id']} of supervisee "
            f"{c['supervisee_id']}.")


def _monitoring_ended(c: Mapping[str, Any]) -> tuple[str, str]:
    end = c.get("sentence_end", "?")
    return (f"Đối tượng {c['supervisee_id']} đã hết thời hạn chấp hành án ({end}): kết thúc "
            f"giám sát, thu hồi thiết bị {c['device_id']}.",
            f"The sentence of supervisee {c['supervisee_id']} ended ({end}): monitoring is "
            f"over, remove device {c['device_id']}.")


def _checkin_missed(c: Mapping[str, Any]) -> tuple[str, str]:
    first, last = c.get("window_first_day", "?"), c.get("window_last_day", "?")
    kind_vi = "đột xuất" if c.get("kind") == "ad_hoc" else "định kỳ"
    kind_en = "ad-hoc" if c.get("kind") == "ad_hoc" else "scheduled"
    return (f"Đối tượng {c['supervisee_id']} không điểm danh, kiểm diện {kind_vi} trong thời "
            f"hạn {first} – {last}.",
            f"Supervisee {c['supervisee_id']} did not check in for the {kind_en} roll-call "
            f"of {first} – {last}.")


_BUILDERS = {
    "zone_exit": _zone_exit,
    "zone_enter": _zone_enter,
    "curfew": _curfew,
    "permit_overrun": _permit_overrun,
    "device_offline": _device_offline,
    "gnss_lost": _gnss_lost,
    "strap_tamper": _strap,
    "case_tamper": _case,
    "battery_low": lambda c: _battery(c, "yếu", "low"),
    "battery_critical": lambda c: _battery(c, "sắp cạn", "critically low"),
    "gnss_jamming": _jamming,
    "monitoring_ended": _monitoring_ended,
    "checkin_missed": _checkin_missed,
}


def render(alert_type: str, ctx: Mapping[str, Any]) -> tuple[str, str]:
    """``(message_vi, message_en)`` for an alert of ``alert_type``.

    ``ctx`` holds ``supervisee_id`` and ``device_id`` (either may be None) and, by type,
    ``zone_id``, ``purpose``, ``distance_m`` (m), ``batt`` (%), ``after_s`` (s).
    """
    full = {"device_id": "?", **{k: v for k, v in ctx.items() if v is not None}}
    full.setdefault("supervisee_id", "?")
    return _BUILDERS[alert_type](full)
