"""``giamsat officer``: the way back from the machine when no admin can sign in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from api.officers import authenticate, create_officer, ensure_admin, get_officer, update_officer

pytestmark = pytest.mark.services


def _giamsat(db_url: str, tmp_path, *args: str, stdin: str | None = None):
    env = {**os.environ, "GIAMSAT_DATABASE_URL": db_url, "GIAMSAT_DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "giamsat", "officer", *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_reset_password_and_enable_from_the_machine(db, db_url, tmp_path):
    ensure_admin(db, "mat-khau-cu-123")
    create_officer(db, "admin2", "mat-khau-admin-2", "admin", None)
    update_officer(db, "admin", active=False)  # the other admin locked this one out ...
    db.commit()
    version = get_officer(db, "admin").password_version

    res = _giamsat(db_url, tmp_path, "reset-password", "admin")
    assert res.returncode == 0, res.stderr
    new = res.stdout.strip().split(": ", 1)[1].split(" ")[0]
    res = _giamsat(db_url, tmp_path, "enable", "admin")
    assert res.returncode == 0 and "admin enabled" in res.stdout, res.stderr

    db.rollback()
    officer = get_officer(db, "admin")
    assert officer.active and officer.password_version == version + 1
    assert authenticate(db, "admin", new) is not None
    assert authenticate(db, "admin", "mat-khau-cu-123") is None
    actions = db.execute("SELECT actor, action, subject FROM audit_log ORDER BY id").fetchall()
    assert [(a, s) for _, a, s in actions] == [("officer.reset_password", "admin"),
                                               ("officer.enable", "admin")]
    assert all(actor.startswith("giamsat-cli") for actor, _, _ in actions)

    res = _giamsat(db_url, tmp_path, "reset-password", "admin2", "--password-stdin",
                   stdin="chon-mat-khau-nay\n")
    assert res.returncode == 0 and "chon-mat-khau-nay" not in res.stdout, res.stderr
    db.rollback()
    assert authenticate(db, "admin2", "chon-mat-khau-nay") is not None


def test_officer_errors_are_messages(db, db_url, tmp_path):
    ensure_admin(db, "mat-khau-cu-123")
    db.commit()
    res = _giamsat(db_url, tmp_path, "enable", "nobody")
    assert res.returncode == 1 and "no officer 'nobody'" in res.stderr
    res = _giamsat(db_url, tmp_path, "disable", "admin")
    assert res.returncode == 1 and "last active admin" in res.stderr
    res = _giamsat(db_url, tmp_path, "reset-password", "admin", "--password-stdin",
                   stdin="short\n")
    assert res.returncode == 1 and "at least 8" in res.stderr
    assert "Traceback" not in res.stderr
    listed = _giamsat(db_url, tmp_path, "list")
    assert listed.returncode == 0 and "admin" in listed.stdout and "active" in listed.stdout
