"""``embedded.brokerconfig`` without a broker: the hash format, issuing and storing device
secrets (only hashes kept), rotation, derived secrets, the ACL text and the CLI."""

from __future__ import annotations

import csv
import io
import shutil
import stat
import subprocess

import pytest

from embedded.brokerconfig import (
    BrokerConfigError,
    Login,
    acl_text,
    derived_device_password,
    mosquitto_hash,
    verify_mosquitto_hash,
    write_broker_config,
)
from tests.security.conftest import SERVICE_PASSWORD, SERVICE_USER, register_devices


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_hash_is_mosquitto_passwd_format(tmp_path):
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "u", "s3cret é"], check=True)
    theirs = path.read_text().strip().split(":", 1)[1]
    assert verify_mosquitto_hash("s3cret é", theirs)
    assert not verify_mosquitto_hash("s3cret e", theirs)
    _, seven, iterations, salt, _ = theirs.split("$")
    import base64

    assert seven == "7"
    assert mosquitto_hash("s3cret é", int(iterations), base64.b64decode(salt)) == theirs


def test_hash_rejects_malformed():
    assert not verify_mosquitto_hash("x", "plain")
    assert not verify_mosquitto_hash("x", "$6$abc$def")
    assert verify_mosquitto_hash("x", mosquitto_hash("x", 5))


def test_acl_gives_owntracks_splits_of_hyphenated_ids():
    text = acl_text("svc", ["a-b-c", "plain"])
    assert "user a-b-c\ntopic write owntracks/a/b-c/#\ntopic read owntracks/a/b-c/cmd\n" \
           "topic write owntracks/a-b/c/#\ntopic read owntracks/a-b/c/cmd\n" in text
    assert "user plain" not in text
    assert text.index("user svc") > text.index("pattern")  # nothing before: anonymous gets none


pytestmark_db = pytest.mark.services


def _stored(db) -> dict[str, str]:
    return dict(db.execute("SELECT device_id, password_hash FROM device_credentials").fetchall())


@pytestmark_db
def test_issues_each_device_one_secret_and_keeps_only_its_hash(db, tmp_path, unique_id):
    a, b = f"ia{unique_id}", f"ib{unique_id}"
    register_devices(db, a, b)
    files = write_broker_config(db, tmp_path / "out", SERVICE_USER, SERVICE_PASSWORD)
    assert set(files.issued) == {a, b} and files.devices == 2 and files.changed
    stored = _stored(db)
    for device_id, secret in files.issued.items():
        assert len(secret) >= 32 and verify_mosquitto_hash(secret, stored[device_id])
        assert secret not in str(db.execute("SELECT * FROM device_credentials").fetchall())
    # the secrets went to a private CSV, once
    path = files.device_passwords_path
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert {r["device_id"]: r["mqtt_password"] for r in rows} == files.issued
    assert all(r["mqtt_username"] == r["device_id"] for r in rows)
    for f in (files.password_file, files.acl_file):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    passwd = dict(line.split(":", 1) for line in files.password_file.read_text().splitlines())
    assert set(passwd) == {SERVICE_USER, a, b} and passwd[a] == stored[a]
    assert verify_mosquitto_hash(SERVICE_PASSWORD, passwd[SERVICE_USER])

    again = write_broker_config(db, tmp_path / "out", SERVICE_USER, SERVICE_PASSWORD)
    assert again.issued == {} and again.device_passwords_path is None and not again.changed
    assert _stored(db) == stored

    c = f"ic{unique_id}"
    register_devices(db, c)
    third = write_broker_config(db, tmp_path / "out", SERVICE_USER, SERVICE_PASSWORD)
    assert set(third.issued) == {c} and third.changed and _stored(db)[a] == stored[a]


@pytestmark_db
def test_rotation_replaces_the_secret(db, tmp_path, unique_id):
    a = f"ra{unique_id}"
    register_devices(db, a)
    first = write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD, write_secrets=False)
    rotated = write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD, rotate=[a],
                                  write_secrets=False)
    assert rotated.issued[a] != first.issued[a]
    assert not verify_mosquitto_hash(first.issued[a], _stored(db)[a])
    with pytest.raises(BrokerConfigError, match="unregistered"):
        write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD, rotate=["nope"])


@pytestmark_db
def test_device_named_like_the_service_user_is_refused(db, tmp_path, unique_id):
    register_devices(db, f"ok{unique_id}", SERVICE_USER)
    with pytest.raises(BrokerConfigError, match="service user"):
        write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD)
    assert _stored(db) == {}  # nothing issued: the transaction rolled back
    assert not (tmp_path / "passwd").exists()
    with pytest.raises(BrokerConfigError, match="service user"):
        write_broker_config(db, tmp_path, "bad:user", SERVICE_PASSWORD)
    db.execute("DELETE FROM devices WHERE id = %s", (SERVICE_USER,))
    register_devices(db, "giamsat-sim")
    with pytest.raises(BrokerConfigError, match="service user"):
        write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD,
                            simulator=Login("giamsat-sim", "pw"))
    with pytest.raises(BrokerConfigError, match="differ"):
        write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD,
                            simulator=Login(SERVICE_USER, "pw"))


@pytestmark_db
def test_derived_secrets_are_not_stored_and_issued_ones_win(db, tmp_path, unique_id):
    a, b = f"da{unique_id}", f"db{unique_id}"
    register_devices(db, a, b)
    fn = derived_device_password(b"k" * 32)
    # with a derivation, only a rotated device is issued a secret (a), the others derive theirs
    issued = write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD, fn, rotate=[a],
                                 write_secrets=False)
    assert set(issued.issued) == {a} and set(_stored(db)) == {a}
    files = write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD, fn)
    assert files.issued == {} and set(_stored(db)) == {a}
    passwd = dict(line.split(":", 1) for line in files.password_file.read_text().splitlines())
    assert verify_mosquitto_hash(fn(b), passwd[b]) and not verify_mosquitto_hash(fn(a), passwd[a])
    assert verify_mosquitto_hash(issued.issued[a], passwd[a])
    assert not write_broker_config(db, tmp_path, SERVICE_USER, SERVICE_PASSWORD, fn).changed
    assert fn(b) != derived_device_password(b"j" * 32)(b) and fn(a) != fn(b)


@pytestmark_db
def test_cli_prints_new_secrets(db_url, db, tmp_path, unique_id, monkeypatch, capsys):
    from giamsat.cli import main

    a = f"ca{unique_id}"
    register_devices(db, a)
    monkeypatch.setenv("GIAMSAT_DATABASE_URL", db_url)
    monkeypatch.setenv("GIAMSAT_MQTT_URL", "mqtt://svc:pw%40x@127.0.0.1:1883")
    assert main(["broker-config", "--out", str(tmp_path), "--print-device-secrets"]) == 0
    out = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert [r["device_id"] for r in rows] == [a]
    assert verify_mosquitto_hash(rows[0]["mqtt_password"], _stored(db)[a])
    assert "reload the broker" in out.err
    passwd = dict(line.split(":", 1) for line in (tmp_path / "passwd").read_text().splitlines())
    assert verify_mosquitto_hash("pw@x", passwd["svc"])  # login taken from GIAMSAT_MQTT_URL
    assert list(tmp_path.glob("device-secrets-*.csv")) == []
    assert main(["broker-config", "--out", str(tmp_path), "--rotate", "nope"]) == 1


def test_login_url_is_percent_encoded():
    assert Login("a b", "p@ss/:").url("127.0.0.1", 1883) == \
        "mqtt://a%20b:p%40ss%2F%3A@127.0.0.1:1883"
    assert "p@ss" not in repr(Login("u", "p@ss"))


@pytestmark_db
def test_no_hash_is_stored_unless_its_secret_was_written(db_url, db, tmp_path, unique_id):
    from schema import connect

    register_devices(db, f"aa{unique_id}")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with connect(db_url, autocommit=True) as conn:
        with pytest.raises(OSError):
            write_broker_config(conn, tmp_path / "out", SERVICE_USER, SERVICE_PASSWORD,
                                secrets_dir=blocker)
        assert _stored(db) == {}
        files = write_broker_config(conn, tmp_path / "out", SERVICE_USER, SERVICE_PASSWORD)
    assert set(files.issued) == set(_stored(db)) == {f"aa{unique_id}"}
