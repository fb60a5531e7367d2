"""Casework in the dashboard (issue 13), in a real headless Chromium against the real API: the
commune chief signs in, records an in-person check-in for a supervisee, confirms the proposed
monthly classification and signs the month's list, all in Vietnamese; an alert's detail names
the law behind its rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.officers import create_officer
from schema import connect
from tests.api.test_dashboard_browser import (  # noqa: F401 (fixtures used by name)
    COMMUNE,
    PASSWORD,
    SUPERVISEE,
    Screens,
    Seed,
    browser,
    open_exit_alert,
    seed_registry,
    serve_api,
)

pytestmark = [pytest.mark.services, pytest.mark.browser]

CHIEF = "truong.t0101"


@pytest.fixture
def seed(db_url: str) -> Seed:
    with connect(db_url) as conn:
        seeded = seed_registry(conn)
        create_officer(conn, CHIEF, PASSWORD, "commune", COMMUNE, display_name="Trưởng CAX",
                       chief=True)
        conn.commit()
    return seeded


@pytest.fixture
def casework_api(db_url: str, seed: Seed, tmp_path: Path) -> Iterator[str]:
    with serve_api(db_url, tmp_path) as url:
        yield url


def test_an_officer_records_a_checkin_and_signs_the_month_in_vietnamese(
        browser, casework_api: str, db_url: str, seed: Seed, tmp_path: Path):  # noqa: F811
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,))
    screens = Screens(d, tmp_path)

    def click(sel: str) -> None:
        def attempt(_):
            d.find_element(By.CSS_SELECTOR, sel).click()
            return True
        wait.until(attempt)

    def text(sel: str) -> str:
        return d.find_element(By.CSS_SELECTOR, sel).text

    d.get(casework_api + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "login-username"))).send_keys(CHIEF)
    d.find_element(By.ID, "login-password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-submit").click()
    wait.until(EC.visibility_of_element_located((By.ID, "app-view")))
    assert d.execute_script("return document.documentElement.lang") == "vi"

    # --- roll-call: an in-person check-in at the station ---
    assert d.find_element(By.ID, "tab-casework").text == "Hồ sơ, điểm danh"
    click("#tab-casework")
    wait.until(lambda _: SUPERVISEE in text("#cw-sup"))
    assert "Điểm danh, kiểm diện" in text("#view-casework")
    d.find_element(By.ID, "cw-checkin-note").send_keys("Có mặt tại trụ sở")
    click("#cw-checkin")
    wait.until(lambda _: "Đã ghi nhận kiểm diện" in text("#cw-status"))
    wait.until(lambda _: "Trực tiếp tại trụ sở" in text("#cw-checkins tbody"))
    assert CHIEF in text("#cw-checkins tbody")
    screens.shot("casework-01-checkin-vi")

    # --- the monthly assessment: confirm the proposal, then the chief signs ---
    row = f"#cw-assess tr[data-sid='{SUPERVISEE}']"
    wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, row))
    assert "Tốt" in text(f"{row} td:nth-child(3)")  # a quiet month: Tốt is proposed
    assert "Chưa xác nhận" in text(f"{row} .cw-confirmed")
    sign = d.find_element(By.ID, "cw-sign")
    assert not sign.is_enabled()  # nobody confirmed yet
    click(f"{row} .cw-confirm")
    wait.until(lambda _: "Tốt" in text(f"{row} .cw-confirmed"))
    wait.until(lambda _: d.find_element(By.ID, "cw-sign").is_enabled())
    assert d.find_element(By.ID, "cw-sign").text == "Ký duyệt danh sách"
    click("#cw-sign")
    wait.until(lambda _: f"Đã ký: {CHIEF}" in text("#cw-signed"))
    assert d.find_element(By.ID, f"cw-class-{SUPERVISEE}").get_attribute("disabled")
    screens.shot("casework-02-signed-vi")

    # --- an alert's detail names the law behind its rule ---
    open_exit_alert(db_url, seed)
    with connect(db_url) as conn:
        alert_id = conn.execute("SELECT id FROM alerts WHERE type = 'zone_exit'").fetchone()[0]
    d.get(f"{casework_api}/#/alerts/{alert_id}")
    wait.until(lambda _: "Căn cứ pháp lý" in text("#detail-summary"))
    assert "41/2019/QH14" in text("#detail-summary")
    assert "chưa kiểm chứng" in text("#detail-summary")
    screens.shot("casework-03-alert-law-vi")

    with connect(db_url) as conn:
        actions = [r[0] for r in conn.execute(
            "SELECT action FROM audit_log WHERE actor = %s ORDER BY id", (CHIEF,))]
        assert conn.execute("SELECT signed_by FROM assessment_signatures WHERE unit = %s",
                            (COMMUNE,)).fetchone() == (CHIEF,)
    assert {"checkin.record", "assessment.confirm", "assessment.sign"} <= set(actions)
