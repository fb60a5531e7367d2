"""The officers' dashboard in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``), against the real API on this test's own database.

An officer signs in through the form, sees a zone-exit alert arrive in the queue live (no
reload) after a simulated exit, acknowledges it through the UI, and opens the map, which draws
the unit boundary, the zones and the last position as vector layers with no internet tiles.
Screenshots go to this test's tmp dir (and to ``$GIAMSAT_SCREENS_DIR`` when set) for a person
to look at, in Vietnamese and in English.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from embedded.services import free_port
from protocol import device_topic
from schema import connect

pytestmark = [pytest.mark.services, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]

PROVINCE, COMMUNE = "PC10-T01", "CAX-T0101"
OFFICER, PASSWORD = "canbo.t0101", "mat-khau-thu-nghiem-1"
SUPERVISEE, DEVICE = "SV-T0001", "dev-t0001"
# A small commune (about 4.4 x 4.4 km) near Hanoi, its province around it, and a residence zone.
LAT0, LON0 = 21.030, 105.850


def _square(lat: float, lon: float, d: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon - d, lat - d], [lon + d, lat - d],
                                                [lon + d, lat + d], [lon - d, lat + d],
                                                [lon - d, lat - d]]]}


@dataclass
class Seed:
    home: tuple[float, float]     # (lat, lon) inside the residence zone
    outside: tuple[float, float]  # (lat, lon) ~1.7 km outside it
    now_ms: int


def _curfew_not_now() -> dict:
    """A nightly-style curfew window that is not in force during the test, whatever the hour
    (a curfew in force would add its own alert to the exit this test drives)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    hour = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).hour
    return {"days": [1, 2, 3, 4, 5, 6, 7], "start": f"{(hour + 6) % 24:02d}:00",
            "end": f"{(hour + 9) % 24:02d}:00"}


def seed_registry(conn: psycopg.Connection) -> Seed:
    """A province and a commune with boundaries, a commune officer, a supervisee (án treo) with a
    residence zone and a scheduled curfew circle, a device assigned to them, and a last fix."""
    from api.officers import create_officer

    now_ms = int(time.time() * 1000)
    conn.execute("INSERT INTO units (code, name, parent, boundary) VALUES "
                 "(%s, 'Phòng PC10 tỉnh Thử nghiệm', NULL, %s), "
                 "(%s, 'Công an xã Thử nghiệm', %s, %s)",
                 (PROVINCE, Jsonb(_square(LAT0, LON0, 0.2)), COMMUNE, PROVINCE,
                  Jsonb(_square(LAT0, LON0, 0.02))))
    conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, sentence_end, "
                 "unit, residence_unit) VALUES (%s, 'Nguyễn Văn Thử', 'an_treo', '2025-01-01', "
                 "'2027-12-31', %s, %s)", (SUPERVISEE, COMMUNE, COMMUNE))
    conn.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, geometry) "
                 "VALUES (%s, 'residence', 'inclusion', 'residence', %s)",
                 (SUPERVISEE, Jsonb(_square(LAT0, LON0, 0.012))))
    conn.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, center_lat, "
                 "radius_m, schedule) VALUES (%s, 'curfew-home', 'inclusion', 'curfew', %s, %s, "
                 "150, %s)", (SUPERVISEE, LON0 - 0.004, LAT0 - 0.004,
                              Jsonb([_curfew_not_now()])))
    conn.execute("INSERT INTO devices (id, supervisee_id) VALUES (%s, %s)", (DEVICE, SUPERVISEE))
    conn.execute("INSERT INTO device_assignments (device_id, supervisee_id, assigned_at, "
                 "assigned_by) VALUES (%s, %s, now() - interval '30 days', 'test')",
                 (DEVICE, SUPERVISEE))
    home = (LAT0 + 0.002, LON0 + 0.003)
    for k in range(5):  # a short track at home over the last 20 minutes
        ts = now_ms - (20 - 5 * k) * 60_000
        conn.execute("INSERT INTO fixes (device_id, ts, seq, lat, lon, acc, received_at, "
                     "supervisee_id) VALUES (%s, to_timestamp(%s / 1000.0), %s, %s, %s, 12, "
                     "now(), %s)", (DEVICE, ts, k, home[0] + 0.0004 * k, home[1], SUPERVISEE))
    conn.execute("INSERT INTO device_state (device_id, last_seen_at, last_fix_ts, last_fix_lat, "
                 "last_fix_lon, last_fix_acc, last_good_fix_ts, last_hb_ts, battery) VALUES "
                 "(%s, now(), to_timestamp(%s / 1000.0), %s, %s, 12, to_timestamp(%s / 1000.0), "
                 "now(), 76)", (DEVICE, now_ms, home[0], home[1], now_ms))
    conn.commit()
    create_officer(conn, OFFICER, PASSWORD, "commune", COMMUNE, display_name="Cán bộ Thử")
    conn.commit()
    return Seed(home=home, outside=(LAT0 + 0.028, LON0 + 0.003), now_ms=now_ms)


def pipeline_available() -> bool:
    return importlib.util.find_spec("giamsat.worker") is not None


class Worker:
    """``giamsat worker`` (ingest, decisions, alerts) on the test's broker and database."""

    def __init__(self, db_url: str, broker, tmp_path: Path, client_id: str):
        env = dict(os.environ)
        env.update(GIAMSAT_DATABASE_URL=db_url, GIAMSAT_MQTT_URL=broker.url,
                   GIAMSAT_MQTT_CLIENT_ID=client_id, GIAMSAT_DATA_DIR=str(tmp_path / "worker"),
                   GIAMSAT_LOG_LEVEL="WARNING")
        self.log_path = tmp_path / "worker.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "giamsat", "worker"], cwd=REPO,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def publish_fixes(broker, client_id: str, fixes: list[dict]) -> None:
    """Publish fixes as the device would: QoS 1 on em/v1/dev/{device}/fix, each acknowledged."""
    from protocol.publisher import Publisher

    device = Publisher.to(broker.host, broker.port, client_id)
    try:
        for fix in fixes:
            device.publish_and_wait(device_topic(DEVICE, "fix"), json.dumps(fix).encode())
    finally:
        device.close()


def drive_exit_through_pipeline(db_url: str, broker, worker: Worker, seed: Seed,
                                client_id: str) -> None:
    """The device reports itself at home until the worker has stored a fix (it is up and
    subscribed), then three fixes 1.7 km outside its residence zone: the geofence confirms the
    exit (confirm_fixes = 2) and the alerts stage opens a zone_exit alert."""
    deadline = time.monotonic() + 60
    seq = 100
    while True:
        if worker.proc.poll() is not None:
            pytest.fail(f"giamsat worker exited with {worker.proc.returncode}:\n{worker.tail()}")
        now_ms = int(time.time() * 1000)
        publish_fixes(broker, client_id, [{"seq": seq, "ts": now_ms, "lat": seed.home[0],
                                           "lon": seed.home[1], "acc": 8}])
        seq += 1
        time.sleep(1.0)
        with connect(db_url) as conn:
            if conn.execute("SELECT 1 FROM fixes WHERE device_id = %s AND seq >= 100",
                            (DEVICE,)).fetchone():
                break
        if time.monotonic() > deadline:
            pytest.fail(f"the worker stored no fix within 60 s:\n{worker.tail()}")
    now_ms = int(time.time() * 1000)
    lat, lon = seed.outside
    publish_fixes(broker, client_id, [
        {"seq": seq + k, "ts": now_ms + 1000 * k, "lat": lat, "lon": lon, "acc": 9}
        for k in range(3)])


def strap_opened(db_url: str, broker, client_id: str | None) -> None:
    """The strap is cut: a device event through the pipeline, else the rule path."""
    now_ms = int(time.time() * 1000)
    if broker is not None:
        from protocol.publisher import Publisher

        device = Publisher.to(broker.host, broker.port, client_id or "")  # "": the broker names it
        try:
            device.publish_and_wait(device_topic(DEVICE, "evt"), json.dumps(
                {"seq": 900, "ts": now_ms, "type": "strap_open"}).encode())
        finally:
            device.close()
        return
    from alerts import rules
    from alerts.model import Occurrence

    occ = Occurrence(type="strap_tamper", supervisee_id=SUPERVISEE, active=True, ts_ms=now_ms,
                     device_id=DEVICE, edge=True)
    with connect(db_url) as conn, conn.transaction():
        assert rules.apply(conn, occ, now_ms), "the rule path opened no alert"


def open_exit_alert(db_url: str, seed: Seed) -> None:
    """A confirmed exit from the residence zone, through the alerts engine's one rule path (the
    same call the pipeline makes for a geofence transition); its history row NOTIFYs the API."""
    from alerts import rules
    from alerts.model import Occurrence

    now_ms = int(time.time() * 1000)
    lat, lon = seed.outside
    occ = Occurrence(type="zone_exit", supervisee_id=SUPERVISEE, active=True, ts_ms=now_ms,
                     zone_id="residence", device_id=DEVICE, lat=lat, lon=lon, severity="medium",
                     since_ms=now_ms - 30_000, escalate_after_s=86_400, edge=True,
                     explanation={"source": "geofence", "zone_id": "residence",
                                  "purpose": "residence", "distance_m": 1700.0, "acc_m": 9.0,
                                  "margin_m": 10.0, "count": 2})
    with connect(db_url) as conn:
        with conn.transaction():
            changes = rules.apply(conn, occ, now_ms)
    assert changes, "the rule path opened no alert"


@pytest.fixture
def seeded(db_url: str) -> Seed:
    with connect(db_url) as conn:
        return seed_registry(conn)


@contextlib.contextmanager
def serve_api(db_url: str, tmp_path: Path, **settings: str) -> Iterator[str]:
    """``giamsat api`` on a free loopback port, serving the API and the dashboard."""
    port = free_port()
    env = dict(os.environ)
    env.pop("GIAMSAT_TILE_URL", None)  # the offline map: no internet tiles
    env.update(GIAMSAT_DATABASE_URL=db_url, GIAMSAT_HTTP=f"127.0.0.1:{port}",
               GIAMSAT_SECRET_KEY="browser-test-signing-key-" + "x" * 32,
               GIAMSAT_DATA_DIR=str(tmp_path / "data"), GIAMSAT_LOG_LEVEL="WARNING",
               **settings)
    log_path = tmp_path / f"api-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "giamsat", "api"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the API exited with {proc.returncode}:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the API did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def api_url(db_url: str, seeded: Seed, tmp_path: Path) -> Iterator[str]:
    with serve_api(db_url, tmp_path) as url:
        yield url


@pytest.fixture
def browser(tmp_path: Path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): "
                    "bin/setup --tests installs chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1366,768",
                "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="giamsat-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        # 1366 x 768 of page, whatever the window decorations take
        driver.set_window_size(1366, 768)
        extra = 768 - driver.execute_script("return window.innerHeight")
        if extra > 0:
            driver.set_window_size(1366, 768 + extra)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Screens:
    """Screenshots into the test's tmp dir, copied to $GIAMSAT_SCREENS_DIR when set."""

    def __init__(self, driver, tmp_path: Path):
        self.driver = driver
        self.dir = tmp_path / "screens"
        self.dir.mkdir()
        extra = os.environ.get("GIAMSAT_SCREENS_DIR")
        self.extra = Path(extra) if extra else None
        if self.extra:
            self.extra.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> Path:
        path = self.dir / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"screenshot {name} failed"
        if self.extra:
            shutil.copy(path, self.extra / path.name)
        return path


def test_dashboard_live_alert_ack_and_map(browser, api_url: str, db_url: str, seeded: Seed,
                                          tmp_path: Path, request, unique_id: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    # The real pipeline when it is there (started now, so it is up by the time it is needed).
    worker = broker = None
    if pipeline_available():
        broker = request.getfixturevalue("mqtt_broker")
        worker = Worker(db_url, broker, tmp_path, f"giamsat-test-{unique_id}")
        request.addfinalizer(worker.stop)

    d = browser
    # the queue redraws as changes stream in: an element found a moment ago may be replaced
    live = (StaleElementReferenceException,)
    wait = WebDriverWait(d, 20, ignored_exceptions=live)
    slow = WebDriverWait(d, 45, ignored_exceptions=live)  # through the pipeline
    screens = Screens(d, tmp_path)
    css = lambda sel: d.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731

    def text(sel: str) -> str:
        return wait.until(lambda _: d.find_element(By.CSS_SELECTOR, sel).text)

    def click(sel: str) -> None:
        def attempt(_):
            d.find_element(By.CSS_SELECTOR, sel).click()
            return True
        wait.until(attempt)

    # --- sign in through the form (Vietnamese by default) ---
    d.get(api_url + "/")
    user = wait.until(EC.visibility_of_element_located((By.ID, "login-username")))
    assert d.execute_script("return document.documentElement.lang") == "vi"
    assert "Đăng nhập" in d.find_element(By.ID, "login-submit").text
    screens.shot("01-login-vi")
    user.send_keys(OFFICER)
    d.find_element(By.ID, "login-password").send_keys("wrong password")
    d.find_element(By.ID, "login-submit").click()
    err = wait.until(EC.visibility_of_element_located((By.ID, "login-error")))
    assert "Sai tên đăng nhập" in err.text
    d.find_element(By.ID, "login-password").clear()
    d.find_element(By.ID, "login-password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-submit").click()
    wait.until(EC.visibility_of_element_located((By.ID, "app-view")))
    assert COMMUNE in d.find_element(By.ID, "who").text  # the officer's unit is shown
    # the live stream is connected before anything happens
    wait.until(lambda _: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")
    wait.until(lambda _: css("#alert-list .empty"))
    screens.shot("02-queue-empty-vi")

    # --- a simulated exit: the alert arrives live, without a reload ---
    marker = d.execute_script("window.__noReload = 1; return window.__noReload")
    assert marker == 1
    if worker is not None:
        drive_exit_through_pipeline(db_url, broker, worker, seeded, f"{DEVICE}-{unique_id}")
    else:
        open_exit_alert(db_url, seeded)
    slow.until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, ".alert-row[data-status='open']")))
    assert d.execute_script("return window.__noReload") == 1, "the page reloaded"
    row_text = text(".alert-row[data-status='open']")
    assert "Ra khỏi vùng cho phép" in row_text and "Trung bình" in row_text
    assert SUPERVISEE in row_text
    assert css(".alert-row.fresh")  # highlighted as just arrived
    screens.shot("03-alert-arrived-vi")

    # --- open it and acknowledge it with a note ---
    click(".alert-row[data-status='open'] button")
    wait.until(EC.visibility_of_element_located((By.ID, "ack-note")))
    wait.until(lambda _: "Mở cảnh báo" in text("#history-list"))
    d.find_element(By.ID, "ack-note").send_keys("Đã gọi điện, đối tượng đang trên đường về")
    click("#ack-submit")
    wait.until(lambda _: css(".alert-row[data-status='acknowledged']"))
    wait.until(lambda _: "Tiếp nhận" in text("#history-list")
               and "đang trên đường về" in text("#history-list"))
    assert "Đã tiếp nhận" in text("#alert-detail .status")
    assert not css("#ack-form") and css("#resolve-form")  # next step: resolve with an outcome
    outcomes = d.find_element(By.CSS_SELECTOR, "#resolve-form fieldset").text
    for label in ("Vi phạm (lập biên bản)", "Có lý do chính đáng", "Báo động nhầm"):
        assert label in outcomes
    with connect(db_url) as conn:
        status, by = conn.execute("SELECT status, acknowledged_by FROM alerts").fetchone()
    assert (status, by) == ("acknowledged", OFFICER)
    screens.shot("04-acknowledged-vi")

    # --- a critical alert chimes (Web Audio), and shows at the top of the queue ---
    assert d.execute_script("return document.body.dataset.beeps || '0'") == "0"
    strap_opened(db_url, broker, f"{DEVICE}-{unique_id}-evt" if worker else None)
    slow.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".alert-row.sev-row-critical")))
    crit_text = text(".alert-row.sev-row-critical")
    assert "Can thiệp dây đeo" in crit_text and "Nghiêm trọng" in crit_text
    assert "sev-row-critical" in wait.until(  # newest first
        lambda _: css(".alert-row")[0].get_attribute("class"))
    wait.until(lambda _: d.execute_script("return document.body.dataset.beeps") == "1")
    # the officer mutes the chime: the button says so, for screen readers too
    mute = d.find_element(By.ID, "mute")
    mute.click()
    assert mute.get_attribute("aria-pressed") == "true" and "tắt" in mute.text
    screens.shot("05-critical-vi")

    # --- the map: boundaries, zones and the last position as SVG paths, no tiles ---
    d.find_element(By.ID, "tab-map").click()
    wait.until(lambda _: len(css("#map svg path.leaflet-interactive")) >= 4)
    wait.until(lambda _: SUPERVISEE in d.find_element(By.ID, "sup-panel").text)
    paths = css("#map svg path")
    strokes = {p.get_attribute("stroke") for p in paths}
    assert "#1d4ed8" in strokes, "the officer's unit boundary is not drawn"
    assert "#15803d" in strokes, "the inclusion zone is not drawn"
    assert any(p.get_attribute("stroke-dasharray") for p in paths), "the curfew is not dashed"
    assert not css("#map img.leaflet-tile"), "internet tiles drawn on the offline map"
    screens.shot("06-map-vi")

    # --- the supervisee panel: zones, 24 h track, case export ---
    d.find_element(By.CSS_SELECTOR, f"#sup-panel a[href='#/map/{SUPERVISEE}']").click()
    with connect(db_url) as conn:  # the seeded fixes, and those the pipeline stored
        (n_fixes,) = conn.execute("SELECT count(*) FROM fixes WHERE device_id = %s",
                                  (DEVICE,)).fetchone()
    wait.until(lambda _: f"{n_fixes} điểm định vị" in text("#sup-panel"))
    panel = text("#sup-panel")
    assert "curfew-home" in panel and "residence" in panel and "Án treo" in panel
    # the 24 h track: a polyline and its fixes coloured by decision (at home: compliant, green;
    # 1.7 km out: violation, red, when the pipeline drove the exit)
    assert [p for p in css("#map svg path") if p.get_attribute("stroke") == "#4338ca"]
    fills = [p.get_attribute("fill") for p in css("#map svg path")]
    assert fills.count("#15803d") >= 5
    if worker is not None:
        assert fills.count("#dc2626") >= 3
    assert css("#case-export")
    screens.shot("07-supervisee-vi")

    # --- English, and the choice survives a reload ---
    d.find_element(By.CSS_SELECTOR, ".topbar .lang-toggle").click()
    assert d.execute_script("return document.documentElement.lang") == "en"
    assert d.find_element(By.ID, "tab-alerts").text == "Alerts"
    screens.shot("08-supervisee-en")
    d.get(api_url + "/#/alerts")
    d.refresh()
    wait.until(EC.visibility_of_element_located((By.ID, "app-view")))  # still signed in
    wait.until(lambda _: css(".alert-row[data-status='acknowledged']"))
    assert d.find_element(By.ID, "tab-map").text == "Map"
    # keyboard only: the rows are buttons, Enter opens one, Escape closes it
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    d.execute_script("document.querySelector(\".alert-row[data-status='acknowledged'] button\")"
                     ".focus()")
    ActionChains(d).send_keys(Keys.ENTER).perform()
    wait.until(lambda _: "Acknowledged" in text("#alert-detail"))
    # focus lands on the detail's heading (after its last redraw: the history loads after it)
    wait.until(lambda _: d.switch_to.active_element.get_attribute("id") == "detail-heading")
    ActionChains(d).send_keys(Keys.ESCAPE).perform()
    wait.until(lambda _: "Select an alert" in text("#alert-detail"))
    click(".alert-row[data-status='acknowledged'] button")
    wait.until(lambda _: "Acknowledged" in text("#alert-detail"))
    assert "False alarm" in text("#resolve-form")
    screens.shot("09-alert-en")

    # --- resolve the strap alert as a false alarm: it leaves the "not resolved" queue ---
    click(".alert-row.sev-row-critical button")
    wait.until(lambda _: "Strap tamper" in text("#detail-summary"))
    click("#outcome-false_alarm")
    d.find_element(By.ID, "resolve-note").send_keys("Strap re-fitted at the station")
    click("#resolve-submit")
    wait.until(lambda _: not css(".alert-row.sev-row-critical"))
    assert "False alarm" in text("#alert-detail")
    with connect(db_url) as conn:
        assert conn.execute("SELECT status, outcome FROM alerts WHERE type = 'strap_tamper'"
                            ).fetchone() == ("resolved", "false_alarm")

    # --- the monthly report, and its CSV ---
    d.find_element(By.ID, "tab-report").click()
    d.find_element(By.CSS_SELECTOR, "#report-form button[type=submit]").click()
    wait.until(lambda _: "Supervisees monitored" in d.find_element(By.ID, "report-body").text)
    body = d.find_element(By.ID, "report-body").text
    assert "Left permitted zone" in body and "Strap tamper" in body and "0.5 %" in body
    screens.shot("10-report-en")
    d.find_element(By.ID, "r-csv").click()
    csv_files = tmp_path / "downloads"
    wait.until(lambda _: [p for p in csv_files.glob("*.csv")])
    csv_text = next(csv_files.glob("*.csv")).read_text(encoding="utf-8")
    assert COMMUNE in csv_text and "supervisees_monitored" in csv_text

    # --- the case export opens, authorised, as a printable page in a new window ---
    d.get(f"{api_url}/#/map/{SUPERVISEE}")
    wait.until(lambda _: css("#case-export"))
    main_window = d.current_window_handle

    def click_export(_) -> bool:  # the panel may redraw between finding and clicking
        d.find_element(By.ID, "case-export").click()
        return True

    wait.until(click_export)
    wait.until(lambda _: len(d.window_handles) == 2)
    d.switch_to.window([h for h in d.window_handles if h != main_window][0])
    wait.until(lambda _: SUPERVISEE in d.find_element(By.TAG_NAME, "body").text)
    screens.shot("11-case-export")
    d.close()
    d.switch_to.window(main_window)

    # no script errors in the page
    errors = [e for e in d.get_log("browser")
              if e["level"] == "SEVERE" and e.get("source") == "javascript"]
    assert not errors, errors


def sign_in(d, wait, base: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    d.get(base + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "login-username"))).send_keys(OFFICER)
    d.find_element(By.ID, "login-password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-submit").click()
    wait.until(lambda _: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")


def test_expired_session_asks_for_the_password_again(browser, db_url: str, seeded: Seed,
                                                     tmp_path: Path):
    """Tokens are short-lived: when one runs out on an unattended screen the dashboard says so
    and asks for the password, keeping the open view, and carries on live after signing in
    again."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 20)
    with serve_api(db_url, tmp_path, GIAMSAT_TOKEN_TTL_S="6") as base:
        sign_in(d, wait, base)
        d.execute_script("location.hash = '#/report'")  # not an officer's click: unattended
        err = WebDriverWait(d, 15).until(EC.visibility_of_element_located((By.ID, "login-error")))
        assert "hết hạn" in err.text
        assert d.find_element(By.ID, "login-username").get_attribute("value") == OFFICER
        assert d.execute_script("return location.hash") == "#/report"
        d.find_element(By.ID, "login-password").send_keys(PASSWORD)
        d.find_element(By.ID, "login-submit").click()
        wait.until(lambda _: d.find_element(By.ID, "view-report").is_displayed())
        wait.until(lambda _: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")


def test_an_officer_at_work_stays_signed_in(browser, db_url: str, seeded: Seed, tmp_path: Path):
    """While the officer clicks and types, the dashboard refreshes its token before it runs
    out (here three times over) and the live stream carries on; the sign-in's own limit then
    ends the session all the same."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 20)
    with serve_api(db_url, tmp_path, GIAMSAT_TOKEN_TTL_S="6",
                   GIAMSAT_SESSION_MAX_S="24") as base:
        sign_in(d, wait, base)
        first = d.execute_script("return JSON.parse(sessionStorage['giamsat.session']).token")
        tokens = {first}
        started = time.monotonic()
        while time.monotonic() - started < 18:  # three token lifetimes
            ActionChains(d).send_keys(Keys.SHIFT).perform()  # the officer at work
            tokens.add(d.execute_script(
                "return JSON.parse(sessionStorage['giamsat.session'] || 'null')?.token"))
            assert d.find_element(By.ID, "login-view").get_attribute("hidden") is not None, \
                "asked for the password while at work"
            time.sleep(0.5)
        assert len(tokens - {None}) >= 3, "the token was not refreshed"
        wait.until(lambda _: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")
        err = WebDriverWait(d, 15).until(
            lambda _: d.find_element(By.ID, "login-error").is_displayed()
            and d.find_element(By.ID, "login-error"))
        assert "hết hạn" in err.text  # 24 s after signing in, work or not


def test_a_refresh_brings_the_officers_new_unit(browser, db_url: str, seeded: Seed,
                                                tmp_path: Path):
    """An officer moved to another unit while signed in: the next refresh reads the new unit
    and the dashboard starts over with it (still signed in, same view)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 20)
    with connect(db_url) as conn:
        conn.execute("INSERT INTO units (code, name, parent) VALUES "
                     "('CAX-T0102', 'Công an xã Bên cạnh', %s)", (PROVINCE,))
        conn.commit()
    with serve_api(db_url, tmp_path, GIAMSAT_TOKEN_TTL_S="6") as base:
        sign_in(d, wait, base)
        assert "CAX-T0101" in d.find_element(By.ID, "who").text
        with connect(db_url) as conn:
            conn.execute("UPDATE officers SET unit = 'CAX-T0102' WHERE username = %s",
                         (OFFICER,))
            conn.commit()

        def moved(_) -> bool:
            ActionChains(d).send_keys(Keys.SHIFT).perform()  # at work: the token is refreshed
            # the line shows the unit's code at once and its name once the units are loaded
            return "Bên cạnh" in d.find_element(By.ID, "who").text

        WebDriverWait(d, 15, poll_frequency=0.5).until(moved)
        assert "CAX-T0102" in d.find_element(By.ID, "who").text
        assert d.find_element(By.ID, "login-view").get_attribute("hidden") is not None
        wait.until(lambda _: d.find_element(By.ID, "conn").get_attribute("data-state") == "live")


def test_an_officer_revokes_and_shortens_a_permit(browser, db_url: str, seeded: Seed,
                                                  tmp_path: Path):
    """The supervisee panel lists the permits; the officer revokes one (it had not started: it
    never applies) and shortens another, each with a reason: both are new versions, by them."""
    from datetime import UTC, datetime

    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    day = 86_400_000
    now = seeded.now_ms
    ids = {}
    with connect(db_url) as conn:
        for reason, start, end in (("thăm bà ngoại", 1, 4), ("đi làm mùa vụ", 10, 15)):
            ids[reason] = conn.execute(
                "INSERT INTO permits (supervisee_id, valid_from, valid_to, reason, category, "
                "anywhere, granted_by) VALUES (%s, %s, %s, %s, 'family', true, %s) RETURNING id",
                (SUPERVISEE, datetime.fromtimestamp((now + start * day) / 1000, UTC),
                 datetime.fromtimestamp((now + end * day) / 1000, UTC), reason, OFFICER)
            ).fetchone()[0]
        conn.commit()
    d = browser
    # the panel redraws once a change is saved: a permit's item found a moment ago may be gone
    wait = WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,))
    with serve_api(db_url, tmp_path) as base:
        sign_in(d, wait, base)
        d.get(f"{base}/#/map/{SUPERVISEE}")
        panel = lambda: d.find_element(By.ID, "sup-panel").text  # noqa: E731
        wait.until(lambda _: "đi làm mùa vụ" in panel() and "điểm định vị" in panel())

        def item(reason: str):
            return d.find_element(By.CSS_SELECTOR, f"li[data-permit='{ids[reason]}']")

        item("thăm bà ngoại").find_element(By.CSS_SELECTOR, ".permit-revoke").click()
        wait.until(lambda _: "Cần ghi lý do" in d.find_element(By.ID, "toast").text)
        item("thăm bà ngoại").find_element(By.CSS_SELECTOR, ".permit-reason").send_keys(
            "Đối tượng vi phạm nghĩa vụ")
        item("thăm bà ngoại").find_element(By.CSS_SELECTOR, ".permit-revoke").click()
        wait.until(lambda _: "không có hiệu lực" in item("thăm bà ngoại").text)
        assert not item("thăm bà ngoại").find_elements(By.CSS_SELECTOR, ".permit-actions")

        new_end = now + 12 * day
        until = item("đi làm mùa vụ").find_element(By.CSS_SELECTOR, ".permit-until")
        d.execute_script("const d = new Date(arguments[1]); arguments[0].value = new Date("
                         "d.getTime() - d.getTimezoneOffset() * 60000).toISOString()"
                         ".slice(0, 16);", until, new_end)
        item("đi làm mùa vụ").find_element(By.CSS_SELECTOR, ".permit-reason").send_keys(
            "Hợp đồng kết thúc sớm")
        item("đi làm mùa vụ").find_element(By.CSS_SELECTOR, ".permit-shorten").click()
        wait.until(lambda _: "Đã rút ngắn" in d.find_element(By.ID, "toast").text)
        Screens(d, tmp_path).shot("12-permits-vi")
    with connect(db_url) as conn:
        rows = conn.execute("SELECT permit_id, version, changed_by, change_reason, revoked_at, "
                            "valid_to FROM permit_versions WHERE version = 2 ORDER BY permit_id"
                            ).fetchall()
    revoked, shortened = rows
    assert revoked[:4] == (ids["thăm bà ngoại"], 2, OFFICER, "Đối tượng vi phạm nghĩa vụ")
    assert revoked[4] is not None
    assert shortened[:4] == (ids["đi làm mùa vụ"], 2, OFFICER, "Hợp đồng kết thúc sớm")
    assert abs(shortened[5].timestamp() * 1000 - new_end) < 60_000  # to the minute, local time
    errors = [e for e in d.get_log("browser")
              if e["level"] == "SEVERE" and e.get("source") == "javascript"]
    assert not errors, errors


def test_throttled_sign_in_is_explained_and_admins_see_the_failures(browser, db_url: str,
                                                                    seeded: Seed,
                                                                    tmp_path: Path):
    """Past the limit, the sign-in form says to wait (not that the server is unreachable);
    the admin finds the failures in their own tab, which officers do not have."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from api.officers import ensure_admin

    with connect(db_url) as conn:
        ensure_admin(conn, "admin-mat-khau-1")
    d = browser
    wait = WebDriverWait(d, 20)
    with serve_api(db_url, tmp_path, GIAMSAT_LOGIN_MAX_FAILURES="2") as base:
        d.get(base + "/")
        err = None
        for _ in range(3):
            user = wait.until(EC.visibility_of_element_located((By.ID, "login-username")))
            user.clear()
            user.send_keys(OFFICER)
            pw = d.find_element(By.ID, "login-password")
            pw.clear()
            pw.send_keys("doan-sai-mat-khau")
            d.find_element(By.ID, "login-submit").click()  # disabled until the answer
            wait.until(lambda _: d.find_element(By.ID, "login-submit").is_enabled())
            err = wait.until(EC.visibility_of_element_located((By.ID, "login-error")))
        wait.until(lambda _: "Thử lại sau" in d.find_element(By.ID, "login-error").text)
        assert err is not None and "giây" in err.text

        user = d.find_element(By.ID, "login-username")
        user.clear()
        user.send_keys("admin")
        pw = d.find_element(By.ID, "login-password")
        pw.clear()
        pw.send_keys("admin-mat-khau-1")
        d.find_element(By.ID, "login-submit").click()
        tab = wait.until(EC.visibility_of_element_located((By.ID, "tab-signins")))
        tab.click()
        body = wait.until(EC.visibility_of_element_located((By.ID, "signins-body")))
        wait.until(lambda _: "sai mật khẩu" in body.text)
        assert OFFICER in body.text and "bị chặn" in body.text
        assert OFFICER in d.find_element(By.ID, "view-signins").text


def test_a_late_alert_shows_when_it_happened_and_when_it_was_raised(browser, db_url: str,
                                                                     seeded: Seed,
                                                                     tmp_path: Path):
    """An exit decided from fixes of an hour ago (a restart's backlog): the queue flags it as
    detected late and its detail says when it happened and when it was raised (issue 11)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from alerts import rules
    from alerts.model import Occurrence

    now_ms = int(time.time() * 1000)
    began = now_ms - 3_600_000
    lat, lon = seeded.outside
    occ = Occurrence(type="zone_exit", supervisee_id=SUPERVISEE, active=True,
                     ts_ms=began + 60_000, zone_id="residence", device_id=DEVICE, lat=lat,
                     lon=lon, since_ms=began, escalate_after_s=86_400, edge=True,
                     explanation={"source": "geofence", "zone_id": "residence",
                                  "purpose": "residence", "count": 2})
    with connect(db_url) as conn, conn.transaction():
        [change] = rules.apply(conn, occ, now_ms, late_after_ms=60_000)
    d = browser
    # the queue and the detail redraw as changes stream in
    wait = WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,))
    with serve_api(db_url, tmp_path) as base:
        sign_in(d, wait, base)
        wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, ".alert-row .flag-late"))
        assert d.find_element(By.CSS_SELECTOR, ".alert-row .flag-late").text == "phát hiện muộn"
        d.get(f"{base}/#/alerts/{change.alert_id}")
        wait.until(lambda _: "xảy ra lúc" in d.find_element(By.ID, "alert-detail").text)
        text = d.find_element(By.ID, "alert-detail").text
        assert "Phát hiện muộn" in text and "phát hiện muộn" in text
        Screens(d, tmp_path).shot("13-late-alert-vi")
