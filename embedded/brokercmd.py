"""``giamsat broker-config``: write the broker's users and permissions from the registry
(``embedded.brokerconfig`` does the work; this is its command line, which ``giamsat.cli``
mounts as it mounts the load test's)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from config import Settings
from embedded.brokerconfig import (
    DEFAULT_SERVICE_USER,
    BrokerAuthFiles,
    BrokerConfigError,
    Login,
    derived_device_password,
    load_or_create_secret,
    secrets_csv,
    write_broker_config,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``giamsat broker-config``."""
    parser.description = (
        "Write a Mosquitto password file (passwd) and ACL (acl), and RabbitMQ definitions "
        "(definitions.json: users, permissions, the service's quorum queues), from the device "
        "registry: each "
        "device may publish only under em/v1/dev/{its id}/ and read only its own cmd topic; "
        "the service user reads every device. Devices without a secret are issued one, stored "
        "only as a hash; the new secrets go to a 0600 CSV file (or standard output) once, for "
        "provisioning. Then reload the broker: SIGHUP (systemctl reload mosquitto, docker "
        "compose kill -s HUP mosquitto).")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for passwd and acl (default: GIAMSAT_DATA_DIR/broker)")
    parser.add_argument("--service-user", default=None,
                        help="MQTT user of the service (default: GIAMSAT_MQTT_USERNAME, the user "
                             f"in GIAMSAT_MQTT_URL, else {DEFAULT_SERVICE_USER!r})")
    parser.add_argument("--service-password-file", type=Path, default=None,
                        help="file holding the service's MQTT password (default: "
                             "GIAMSAT_MQTT_PASSWORD, the password in GIAMSAT_MQTT_URL, else a "
                             "random one kept in OUT/service.secret)")
    parser.add_argument("--print-device-secrets", action="store_true",
                        help="print newly issued device secrets as CSV on standard output "
                             "instead of writing OUT/device-secrets-*.csv")
    parser.add_argument("--secrets-dir", type=Path, default=None,
                        help="directory for the device-secrets CSV (default: OUT)")
    parser.add_argument("--rotate", action="append", default=[], metavar="DEVICE_ID",
                        help="issue a new secret to this device (repeatable); the old one stops "
                             "working at the broker's next reload")
    parser.add_argument("--derive-key-file", type=Path, default=None,
                        help="devices without an issued secret get HMAC(key, id) instead of a new "
                             "secret (single-host test setups only)")
    parser.add_argument("--simulator-user", default=None, metavar="NAME",
                        help="also add a load-generator user that may publish as ANY device, "
                             "password in OUT/simulator.secret (test setups only, never a fleet "
                             "in the field)")
    parser.add_argument("--shards", type=int, default=None,
                        help="RabbitMQ: the service's quorum queues in definitions.json "
                             "(default: GIAMSAT_WORKERS)")
    parser.add_argument("--chown", default=None, metavar="UID[:GID]",
                        help="give passwd and acl to the broker's account, e.g. 1883:1883 for the "
                             "eclipse-mosquitto image (needs root)")


def _service_login(args: argparse.Namespace, settings: Settings, out: Path) -> tuple[str, str]:
    from config.mqtt import parse_mqtt_url

    url = parse_mqtt_url(settings.mqtt_url) if settings.mqtt_url else None
    user = (args.service_user or settings.mqtt_username
            or (url.username if url else None) or DEFAULT_SERVICE_USER)
    if args.service_password_file is not None:
        password = args.service_password_file.read_text().strip()
    else:
        password = (settings.mqtt_password
                    or (url.password if url else None)
                    or load_or_create_secret(out / "service.secret"))
    if not password:
        raise BrokerConfigError("the service password is empty")
    return user, password


def _parse_owner(spec: str | None) -> tuple[int, int] | None:
    if spec is None:
        return None
    import grp
    import pwd

    user, _, group = spec.partition(":")
    uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    if not group:
        return uid, (pwd.getpwuid(uid).pw_gid if not user.isdigit() else uid)
    return uid, int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``giamsat broker-config``: write the files, report what was issued; 0 on success."""
    from embedded.database import open_database

    out = Path(args.out or settings.data_dir / "broker")
    try:
        user, password = _service_login(args, settings, out)
        fn = None
        if args.derive_key_file is not None:
            fn = derived_device_password(load_or_create_secret(args.derive_key_file).encode())
        with open_database(settings) as conn:
            simulator = None
            if args.simulator_user:
                simulator = Login(args.simulator_user,
                                  load_or_create_secret(out / "simulator.secret"))
            files = write_broker_config(
                conn, out, user, password, fn, secrets_dir=args.secrets_dir,
                write_secrets=not args.print_device_secrets, rotate=args.rotate,
                owner=_parse_owner(args.chown), simulator=simulator,
                shards=max(1, args.shards or settings.workers))
    except (BrokerConfigError, OSError, KeyError) as exc:
        print(f"giamsat broker-config: {exc}", file=sys.stderr)
        return 1
    _report(files, user, args.print_device_secrets)
    return 0


def _report(files: BrokerAuthFiles, user: str, to_stdout: bool) -> None:
    err = sys.stderr
    print(f"wrote {files.password_file} ({files.devices} device(s) + service user {user!r}) "
          f"and {files.acl_file}{'' if files.changed else ' (unchanged)'}", file=err)
    if files.issued and to_stdout:
        sys.stdout.write(secrets_csv(files.issued))
    elif files.issued:
        print(f"issued secrets to {len(files.issued)} new device(s): {files.device_passwords_path}"
              " (mode 0600): provision the devices with them, then delete the file; only "
              "hashes are kept", file=err)
    if files.changed:
        print("reload the broker to apply: SIGHUP (e.g. systemctl reload mosquitto, or "
              "docker compose kill -s HUP mosquitto); RabbitMQ: rabbitmqctl import_definitions "
              f"{files.definitions_file}", file=err)
