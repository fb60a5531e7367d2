"""Casework in the dashboard (issue 15), in headless Chromium, in Vietnamese, against the real
API, broker and pipeline worker: an officer finds a person by name, sends "locate now" and sees
the device's answer and the fix that followed, grants a permit the policy allows and sees the
reason for one it refuses, draws a zone on the map, and downloads an evidence pack."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from schema import connect
from tests.api.test_case_screens import Device
from tests.api.test_dashboard_browser import (  # noqa: F401  (fixtures)
    COMMUNE,
    DEVICE,
    OFFICER,
    SUPERVISEE,
    Screens,
    Worker,
    browser,
    open_exit_alert,
    pipeline_available,
    seeded,
    serve_api,
    sign_in,
)

pytestmark = [pytest.mark.services, pytest.mark.browser]

OTHER, OTHER_NAME = "SV-T0002", "Trần Thị Hoa"


def _second_person_with_an_alert(db_url: str) -> None:
    from alerts import rules
    from alerts.model import Occurrence

    now_ms = int(time.time() * 1000)
    with connect(db_url) as conn:
        conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                     "sentence_end, unit) VALUES (%s, %s, 'quan_che', '2025-06-01', "
                     "'2027-06-01', %s)", (OTHER, OTHER_NAME, COMMUNE))
        conn.execute("INSERT INTO devices (id, supervisee_id) VALUES ('dev-t0002', %s)",
                     (OTHER,))
        conn.commit()
        with conn.transaction():
            rules.apply(conn, Occurrence(type="battery_low", supervisee_id=OTHER, active=True,
                                         ts_ms=now_ms, device_id="dev-t0002", edge=True), now_ms)


def test_an_officer_runs_a_case(browser, db_url: str, seeded, tmp_path: Path, request, unique_id: str):  # noqa: F811
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not pipeline_available():
        pytest.skip("no pipeline worker")
    broker = request.getfixturevalue("mqtt_broker")
    worker = Worker(db_url, broker, tmp_path, f"giamsat-test-{unique_id}")
    request.addfinalizer(worker.stop)
    device = Device(broker.host, broker.port, DEVICE, *seeded.home)
    request.addfinalizer(device.close)
    open_exit_alert(db_url, seeded)
    _second_person_with_an_alert(db_url)

    d = browser
    wait = WebDriverWait(d, 30, ignored_exceptions=(StaleElementReferenceException,))
    slow = WebDriverWait(d, 45, ignored_exceptions=(StaleElementReferenceException,))  # pipeline
    screens = Screens(d, tmp_path)
    css = lambda sel: d.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731

    def text(sel: str) -> str:
        return wait.until(lambda _: d.find_element(By.CSS_SELECTOR, sel).text)

    def click(sel: str) -> None:  # the queue and panels redraw: retry on a replaced element
        def attempt(_):
            d.find_element(By.CSS_SELECTOR, sel).click()
            return True
        wait.until(attempt)

    with serve_api(db_url, tmp_path, GIAMSAT_MQTT_URL=broker.url) as base:
        sign_in(d, wait, base)
        assert d.execute_script("return document.documentElement.lang") == "vi"

        # --- people, not ids: the queue names them, and finds one by name ---
        wait.until(lambda _: len(css(".alert-row")) == 2)
        assert OTHER_NAME in text("#alert-list") and "Nguyễn Văn Thử" in text("#alert-list")
        search = d.find_element(By.ID, "f-q")
        search.send_keys("hoa")
        wait.until(lambda _: len(css(".alert-row")) == 1)
        assert OTHER_NAME in text(".alert-row") and f"({OTHER})" in text(".alert-row")
        screens.shot("c01-search-by-name-vi")
        search.clear()
        search.send_keys("văn thử")
        wait.until(lambda _: len(css(".alert-row")) == 1 and SUPERVISEE in text(".alert-row"))

        # --- locate now from the alert: the device answers, the fix shows ---
        click(".alert-row button")
        wait.until(lambda _: "Nguyễn Văn Thử" in text("#detail-summary"))
        assert "Nơi cư trú (residence)".lower() in text("#detail-summary").lower()
        click("#locate-now")
        slow.until(lambda _: "Định vị ngay" in text("#alert-commands")
                   and "đã thực hiện" in text("#alert-commands")
                   and "Vị trí sau lệnh" in text("#alert-commands"))
        assert device.received and any(c["type"] == "locate" for c in device.received)
        # the open zone alert made the service ask for a faster fix rate; the device said yes
        wait.until(lambda _: "Đặt chu kỳ định vị 10 giây" in text("#alert-commands"))
        assert {"type": "set_interval", "fix_s": 10} in [
            {k: v for k, v in c.items() if k != "id"} for c in device.received]
        screens.shot("c02-locate-now-answered-vi")

        # --- the supervisee's page: grant a permit the policy allows ---
        d.get(f"{base}/#/map/{SUPERVISEE}")
        wait.until(lambda _: css("#permit-form"))
        d.find_element(By.ID, "permit-reason").send_keys("Khám bệnh tại bệnh viện tỉnh")
        d.find_element(By.ID, "permit-category").send_keys("Khám")
        click("#permit-submit")
        wait.until(lambda _: "Khám bệnh tại bệnh viện tỉnh" in text("#permit-list"))
        # ... and one it refuses (a 90-day trip; án treo allows 60): the reason is shown
        d.execute_script("""
            const f = document.getElementById('permit-from'), t = document.getElementById('permit-to');
            const at = (days) => new Date(Date.now() + 7 * 3600e3 + days * 864e5).toISOString().slice(0, 16);
            f.value = at(10); t.value = at(100);""")
        d.find_element(By.ID, "permit-category").send_keys("Công")
        reason = d.find_element(By.ID, "permit-reason")
        reason.clear()
        reason.send_keys("Đi làm ăn xa")
        click("#permit-submit")
        wait.until(lambda _: d.find_element(By.ID, "permit-error").is_displayed())
        err = text("#permit-error")
        assert "Không cấp được" in err and "max_trip" in err, err
        assert "chuyến đi dài hơn mức hình phạt cho phép" in err  # the reason, in Vietnamese
        assert "Đi làm ăn xa" not in text("#permit-list")
        screens.shot("c03-permit-refused-vi")

        # --- draw a zone: a polygon of four clicks on the map, on weekday evenings ---
        click("#zone-new")
        d.find_element(By.ID, "zone-id").send_keys("cho-dem")
        d.find_element(By.ID, "zone-kind").send_keys("Cấm")
        the_map = d.find_element(By.ID, "map")
        for dx, dy in ((-60, -60), (60, -60), (60, 60), (-60, 60)):
            ActionChains(d).move_to_element_with_offset(the_map, dx, dy).click().perform()
            time.sleep(0.2)
        for day in (1, 2, 3, 4, 5):
            d.find_element(By.ID, f"zone-day-{day}").click()
        d.execute_script("document.getElementById('zone-start').value = '19:00';"
                         "document.getElementById('zone-end').value = '23:00';")
        screens.shot("c04-zone-drawn-vi")
        click("#zone-save")
        wait.until(lambda _: "Đã lưu vùng" in text("#toast"))
        with connect(db_url) as conn:
            kind, geom, sched = conn.execute(
                "SELECT kind, geometry, schedule FROM zones WHERE supervisee_id = %s AND "
                "id = 'cho-dem'", (SUPERVISEE,)).fetchone()
        assert kind == "exclusion" and geom["type"] == "Polygon"
        assert len(geom["coordinates"][0]) == 5
        assert sched == [{"days": [1, 2, 3, 4, 5], "start": "19:00", "end": "23:00"}]
        wait.until(lambda _: "cho-dem" in text("#zone-tools"))
        assert "Ra khỏi vùng cho phép" in text("#sup-all-alerts")  # the person's alerts

        # --- the evidence pack downloads as one zip ---
        click("#evidence-download")
        downloads = tmp_path / "downloads"
        wait.until(lambda _: [p for p in downloads.glob("*.zip")])
        pack = next(downloads.glob("*.zip"))
        time.sleep(0.5)
        with zipfile.ZipFile(pack) as zf:
            assert {"manifest.json", "report.pdf", "fixes.csv"} <= set(zf.namelist())
        screens.shot("c05-case-panel-vi")

        errors = [e for e in d.get_log("browser")
                  if e["level"] == "SEVERE" and e.get("source") == "javascript"]
        assert not errors, errors


def test_a_province_officer_manages_webhooks_and_reads_the_audit(browser, db_url: str, seeded, tmp_path: Path):  # noqa: F811
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from api.officers import create_officer
    from tests.alerts.helpers import Receiver
    from tests.api.test_dashboard_browser import PASSWORD, PROVINCE

    with connect(db_url) as conn:
        create_officer(conn, "tinh.t01", PASSWORD, "province", PROVINCE,
                       display_name="Cán bộ tỉnh")
        conn.commit()
    receiver = Receiver()
    d = browser
    wait = WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,))

    def text(sel: str) -> str:
        return wait.until(lambda _: d.find_element(By.CSS_SELECTOR, sel).text)

    def click(sel: str) -> None:  # the webhook list redraws: retry on a replaced element
        def attempt(_):
            d.find_element(By.CSS_SELECTOR, sel).click()
            return True
        wait.until(attempt)

    try:
        with serve_api(db_url, tmp_path) as base:
            d.get(base + "/")
            wait.until(lambda _: d.find_element(By.ID, "login-username").is_displayed())
            d.find_element(By.ID, "login-username").send_keys("tinh.t01")
            d.find_element(By.ID, "login-password").send_keys(PASSWORD)
            d.find_element(By.ID, "login-submit").click()
            wait.until(lambda _: d.find_element(By.ID, "tab-admin").is_displayed())
            d.find_element(By.ID, "tab-admin").click()
            wait.until(lambda _: d.find_elements(By.ID, "webhook-unit"))
            d.find_element(By.ID, "webhook-unit").send_keys("Công an xã")
            d.find_element(By.ID, "webhook-url").send_keys(receiver.url)
            d.find_element(By.CSS_SELECTOR, "#webhook-form button[type=submit]").click()
            wait.until(lambda _: "Khóa bí mật" in text("#webhook-secret"))
            secret = text("#webhook-secret").rsplit(": ", 1)[1]
            with connect(db_url) as conn:
                (stored,) = conn.execute("SELECT secret FROM unit_webhooks").fetchone()
            assert secret == stored
            wait.until(lambda _: receiver.url in text("#webhook-list"))
            click("#webhook-list .webhook-test")
            wait.until(lambda _: "Gửi thử: OK 200" in text("#webhook-list"))
            wait.until(lambda _: "Nhật ký gửi" in text("#webhook-list"))
            assert receiver.requests and b'"type":"test"' in receiver.requests[-1]["body"]
            click("#webhook-list .webhook-switch")
            wait.until(lambda _: "đã tắt" in text("#webhook-list"))
            d.find_element(By.ID, "audit-unit").send_keys("Công an xã")  # reloads it
            wait.until(lambda _: "webhook.test" in text("#audit-table")
                       and "webhook.create" in text("#audit-table"))
            assert "tinh.t01" in text("#audit-table")
            Screens(d, tmp_path).shot("c06-admin-webhooks-audit-vi")
    finally:
        receiver.close()


class TileServer:
    """An XYZ tile server on 127.0.0.1 answering every /{z}/{x}/{y}.png with one grey pixel."""

    @staticmethod
    def _png() -> bytes:
        import struct
        import zlib

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\x00\xc8\xc8\xc8")) + chunk(b"IEND", b""))

    def __init__(self) -> None:
        import http.server
        import threading

        self.paths: list[str] = []
        server = self
        png = self._png()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_map_an_officer_can_read(browser, db_url: str, seeded, tmp_path: Path):  # noqa: F811
    """The deployment's tile server under the boundaries, the person in alert marked out, month
    names in Vietnamese, and a link to a resolved alert that the default filter hides."""
    import re

    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from alerts import lifecycle

    open_exit_alert(db_url, seeded)
    with connect(db_url) as conn:
        (resolved_id,) = conn.execute("SELECT id FROM alerts").fetchone()
    _second_person_with_an_alert(db_url)
    tiles = TileServer()
    d = browser
    wait = WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,))
    css = lambda sel: d.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    try:
        with serve_api(db_url, tmp_path, GIAMSAT_MAP_TILES_URL=tiles.url,
                       GIAMSAT_MAP_TILES_ATTRIBUTION="Bản đồ nền: máy chủ nội bộ") as base:
            sign_in(d, wait, base)
            d.find_element(By.ID, "tab-map").click()
            wait.until(lambda _: [i for i in css("#map img.leaflet-tile")
                                  if i.get_attribute("src").startswith(tiles.url.split("{")[0])])
            assert tiles.paths and all(re.fullmatch(r"/\d+/\d+/\d+\.png", p) for p in tiles.paths)
            strokes = {p.get_attribute("stroke") for p in css("#map svg path")}
            assert "#1d4ed8" in strokes  # the unit boundary stays drawn over the tiles
            assert "máy chủ nội bộ" in d.find_element(By.CSS_SELECTOR,
                                                      ".leaflet-control-attribution").text
            # the person in alert: a larger red dot in a halo, unlike the others
            wait.until(lambda _: css("#map path.position-alert") and css("#map path.alert-halo"))
            assert css("#map path.position-alert")[0].get_attribute("fill") == "#e11d48"
            Screens(d, tmp_path).shot("c07-map-tiles-alert-vi")

            # month names in the interface's language
            d.find_element(By.ID, "tab-report").click()
            month = d.find_element(By.CSS_SELECTOR, "#r-month option:checked").text
            assert re.fullmatch(r"tháng \d{1,2},? (năm )?\d{4}", month.lower()), month
            d.find_element(By.CSS_SELECTOR, ".topbar .lang-toggle").click()
            month = d.find_element(By.CSS_SELECTOR, "#r-month option:checked").text
            assert re.fullmatch(r"[A-Z][a-z]+ \d{4}", month), month
            d.find_element(By.CSS_SELECTOR, ".topbar .lang-toggle").click()

            # a link to a resolved alert shows it although the queue lists unresolved ones
            with connect(db_url) as conn, conn.transaction():
                lifecycle.resolve(conn, resolved_id, OFFICER, "false_alarm", "thử",
                                  int(time.time() * 1000))
            d.get(f"{base}/#/alerts/{resolved_id}")
            d.refresh()
            wait.until(lambda _: f"#{resolved_id}" in d.find_element(By.ID, "alert-detail").text)
            assert "Đã xử lý xong" in d.find_element(By.ID, "alert-detail").text
            assert not [r for r in css(".alert-row") if r.get_attribute("data-id") == str(resolved_id)]
    finally:
        tiles.close()
