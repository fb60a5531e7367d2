"""The ``giamsat`` command: one entrypoint, one subcommand per job (contract §4).

Settings are read here, once, and passed down.
"""

from __future__ import annotations

import argparse
import sys

from config import Settings
from giamsat.logs import setup_logging
from giamsat.supervisor import die_with_supervisor


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from giamsat.app import run_up

    return run_up(settings, demo=args.demo, simulate=not args.no_simulator,
                  devices=args.devices)


def _cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from giamsat.app import open_database
    from registry.document import ImportError_, import_file

    with open_database(settings) as conn:
        try:
            summary = import_file(conn, args.file)
        except ImportError_ as exc:
            print(f"giamsat import: {args.file}: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"giamsat import: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 1
    print(f"imported {args.file}: {summary}" if summary.changed
          else f"{args.file}: nothing to change ({summary})")
    return 0


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from giamsat.app import open_database

    with open_database(settings):
        pass  # open_database applies pending migrations
    print("schema up to date")
    return 0


def _cmd_retention(args: argparse.Namespace, settings: Settings) -> int:
    from giamsat.app import open_database
    from schema import apply_retention

    with open_database(settings) as conn:
        removed = apply_retention(conn)
    print("retention by receipt time: " + ", ".join(f"{n} removed from {t}"
                                                     for t, n in removed.items()))
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from giamsat.worker import run_worker

    return run_worker(settings)


def _cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from giamsat.app import run_api

    return run_api(settings)


def _cmd_demo_data(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from simulators.demo import build_demo_document

    doc = build_demo_document(seed=args.seed)
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    if args.out == "-":
        sys.stdout.buffer.write(data + b"\n")
    else:
        with open(args.out, "wb") as fh:
            fh.write(data)
        print(f"wrote {args.out}")
    return 0


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from alerts.decide.replay import parse_proposal, parse_time, replay
    from giamsat.app import open_database

    try:
        start, end = parse_time(_int_or(args.start), "--from"), parse_time(_int_or(args.end), "--to")
        zones = permits = None
        if args.what_if:
            with open(args.what_if, "rb") as fh:
                zones, permits = parse_proposal(orjson.loads(fh.read()), args.supervisee)
    except (ValueError, OSError) as exc:
        print(f"giamsat replay: {exc}", file=sys.stderr)
        return 2
    with open_database(settings) as conn:
        try:
            result = replay(conn, settings, args.supervisee, start, end, zones=zones,
                            permits=permits)
        except LookupError as exc:
            print(f"giamsat replay: {exc}", file=sys.stderr)
            return 2
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        _print_replay(result, what_if=bool(args.what_if))
    return 1 if result.reproduced is False else 0


def _int_or(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value


def _print_replay(result, what_if: bool) -> None:
    print(f"{result.supervisee_id}: {result.fixes} stored fixes re-decided"
          f"{' against the proposed zones and permits' if what_if else ''}")
    for c in result.changes:
        print(f"  {c.line()}")
    if not result.changes:
        print("  no zone alert would open or end")
    if result.recorded is not None:
        if result.differences:
            print(f"self-check: {len(result.differences)} difference(s) from what was recorded:")
            for d in result.differences:
                print(f"  {d}")
        else:
            print(f"self-check: reproduces the {len(result.recorded)} recorded alert changes")


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from simulators import cli as sim_cli

    p = sub.add_parser("simulate", help="a device fleet publishing by the device protocol",
                       description="Simulate a fleet of monitoring devices over MQTT.")
    sim_cli.add_arguments(p)
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from simulators import cli as sim_cli

    if args.mqtt_url == sim_cli.DEFAULT_URL and not settings.mqtt_url:
        # the embedded broker is secured: publish with its simulator login
        from embedded.brokerconfig import embedded_login_url

        args.mqtt_url = embedded_login_url(settings, "simulator")
    return sim_cli.run(args)


def _add_optional(sub: argparse._SubParsersAction, name: str, module: str, help_: str) -> None:
    """Subcommands whose module may take settings (loadtest, broker-config)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return
    p = sub.add_parser(name, help=help_, description=help_)
    mod.add_arguments(p)
    p.set_defaults(func=lambda a, s: mod.run(a, s))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="giamsat",
        description="Electronic monitoring (giám sát điện tử): ingest device messages, check "
                    "geofences, raise and route alerts to commune police. Settings come from "
                    "GIAMSAT_* environment variables (see config/giamsat.env.example).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="run the whole service (embedded PostgreSQL and durable "
                                  "broker if no URLs are set)")
    p.add_argument("--demo", action="store_true",
                   help="load demo units, officers, supervisees, zones and run a simulated fleet")
    p.add_argument("--no-simulator", action="store_true",
                   help="with --demo: load the demo registry but run no simulated fleet")
    p.add_argument("--devices", type=int, default=None,
                   help="with --demo: how many demo devices to simulate (default: all)")
    p.set_defaults(func=_cmd_up)

    _add_simulate(sub)

    p = sub.add_parser("import", help="load a JSON registry document, all or nothing")
    p.add_argument("file", help="JSON document with units, supervisees, devices, permits")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("migrate", help="apply pending database migrations and exit")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("retention", help="remove telemetry past its keep time counted from "
                                         "receipt (daily; TimescaleDB runs it as a job itself)")
    p.set_defaults(func=_cmd_retention)

    p = sub.add_parser("worker", help="run only the ingest and decision pipeline (as `up` does "
                                      "in a child process)")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("api", help="run only the HTTP API and dashboard")
    p.set_defaults(func=_cmd_api)

    p = sub.add_parser(
        "replay", help="re-decide a supervisee's period from the stored fixes",
        description="Re-decide a supervisee's period from the stored fixes with the live engine. "
                    "Without --what-if it checks that the alerts that fired are reproduced "
                    "(exit 1 and the differences otherwise); with --what-if it stores and sends "
                    "nothing and lists the alerts that would have fired against proposed zones "
                    "and permits.")
    p.add_argument("supervisee", help="supervisee id")
    p.add_argument("--from", dest="start", required=True,
                   help="start: ISO date-time with offset (2026-12-01T00:00+07:00) or epoch ms")
    p.add_argument("--to", dest="end", required=True, help="end (excluded), same forms")
    p.add_argument("--what-if", metavar="FILE",
                   help="JSON {\"zones\": [...], \"permits\": [...]} in the import format")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("demo-data", help="print the demo registry document")
    p.add_argument("--out", default="-", help="file to write (default: standard output)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.set_defaults(func=_cmd_demo_data)

    _add_optional(sub, "loadtest", "simulators.loadtest",
                  "drive the running service and print sustained fixes/s and alert latency")
    _add_optional(sub, "broker-config", "giamsat.brokercmd",
                  "write the broker's users and permissions (Mosquitto password file and ACL, "
                  "RabbitMQ definitions) from the device registry")
    _add_optional(sub, "officer", "giamsat.officercmd",
                  "officer accounts from the machine: reset a password, enable or disable an "
                  "account, list them (the way back when no admin can sign in)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``giamsat`` command."""
    die_with_supervisor()  # a child of `giamsat up` goes when up goes
    args = build_parser().parse_args(argv)
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json)
    from schema import UnsafeTimescale

    try:
        return int(args.func(args, settings) or 0)
    except UnsafeTimescale as exc:  # a database release known to lose rows: refuse to run
        print(f"giamsat {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
