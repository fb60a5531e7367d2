"""`giamsat simulate` / `python -m simulators`: a device fleet publishing by the device protocol.

Examples:

    giamsat simulate --devices 30 --duration 120 --scenario exit,tamper --share 0.2
    giamsat simulate --registry demo.json --rate 2000 --single-connection --duration 30
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import orjson

from simulators import messages as m
from simulators.fleet import SCENARIOS
from simulators.runner import DEFAULT_URL, RunConfig, simulate


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"share must be in (0, 1], got {text}")
    return value


def _batch(text: str) -> int:
    value = int(text)
    if not 1 <= value <= m.MAX_BATCH:
        raise argparse.ArgumentTypeError(f"batch must be 1..{m.MAX_BATCH}, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `giamsat simulate`."""
    a = parser.add_argument
    a(
        "--mqtt-url",
        default=os.environ.get("GIAMSAT_MQTT_URL", DEFAULT_URL),
        help="broker, mqtt://[user:pass@]host[:port] or mqtts://... (default: $GIAMSAT_MQTT_URL or %(default)s)",
    )
    a(
        "--devices",
        type=_positive(int),
        default=None,
        help="how many devices (default: all in the registry; the demo registry grows to fit)",
    )
    a(
        "--rate",
        type=_positive(float),
        default=None,
        help="fix messages per second for the whole fleet (sets the per-device fix interval)",
    )
    a(
        "--fix-interval",
        type=_positive(float),
        default=10.0,
        metavar="S",
        help="seconds between a device's fixes, unless --rate is given (default %(default)s)",
    )
    a(
        "--hb-interval",
        type=_positive(float),
        default=60.0,
        metavar="S",
        help="seconds between a device's heartbeats (default %(default)s)",
    )
    a(
        "--duration",
        type=_positive(float),
        default=60.0,
        metavar="S",
        help="stop after this many seconds (default %(default)s)",
    )
    a("--max-messages", type=_positive(int), default=None, help="stop after publishing this many")
    a(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help=f"repeatable or comma-separated: {', '.join(SCENARIOS)}",
    )
    a(
        "--share",
        type=_share,
        default=0.2,
        help="fraction of the devices eligible for each scenario that play it (default %(default)s)",
    )
    a("--batch", type=_batch, default=1, help="fixes per fix message, 1..500 (default %(default)s)")
    a(
        "--registry",
        type=Path,
        default=None,
        metavar="FILE",
        help="an import document (giamsat import format) to take devices and homes from (default: the demo's)",
    )
    a("--seed", type=int, default=1, help="seed of the fleet's behaviour (default %(default)s)")
    a("--qos", type=int, choices=(0, 1, 2), default=1, help="QoS of fixes and events (default 1)")
    a("--hb-qos", type=int, choices=(0, 1), default=0, help="QoS of heartbeats (default 0)")
    a(
        "--single-connection",
        action="store_true",
        help="publish for all devices through one MQTT client (for load); by default each device "
        "connects with its own client id, as a real device does",
    )
    a(
        "--clean-session",
        action="store_true",
        help="connect with a clean session (the contract's devices keep a persistent one)",
    )
    a("--quiet", action="store_true", help="no progress line, only the summary")


def _scenarios(values: list[str]) -> tuple[str, ...]:
    names = tuple(n.strip() for v in values for n in v.split(",") if n.strip())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(
            f"unknown scenario(s) {', '.join(unknown)}; expected {', '.join(SCENARIOS)}"
        )
    return names


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A run configuration from parsed options (reads the registry file)."""
    registry = orjson.loads(args.registry.read_bytes()) if args.registry else None
    return RunConfig(
        url=args.mqtt_url,
        devices=args.devices,
        rate=args.rate,
        fix_interval_s=args.fix_interval,
        hb_interval_s=args.hb_interval,
        duration_s=args.duration,
        max_messages=args.max_messages,
        scenarios=_scenarios(args.scenario),
        share=args.share,
        batch=args.batch,
        registry=registry,
        seed=args.seed,
        qos=args.qos,
        hb_qos=args.hb_qos,
        single_connection=args.single_connection,
        clean_session=args.clean_session,
        quiet=args.quiet,
    )


def _sigterm_as_interrupt() -> None:
    """SIGTERM (from `giamsat up`) stops the run like Ctrl-C: clients disconnect cleanly."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def scenario_line(assignments: dict[str, str], show: int = 8) -> str:
    """`scenarios: exit 5 (dev-0003, ...), tamper 1 (dev-0011)`: who plays what, shortened."""
    by: dict[str, list[str]] = {}
    for device_id, scenario in sorted(assignments.items()):
        by.setdefault(scenario, []).append(device_id)
    parts = []
    for scenario, ids in by.items():
        more = f", +{len(ids) - show} more" if len(ids) > show else ""
        parts.append(f"{scenario} {len(ids)} ({', '.join(ids[:show])}{more})")
    return "scenarios: " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Run `giamsat simulate`: 0 when every publish was confirmed, 1 if some were not, 2 on error."""
    try:
        cfg = config_from_args(args)
        _sigterm_as_interrupt()
        summary = simulate(cfg)
    except (OSError, ValueError, TimeoutError) as exc:
        print(f"giamsat simulate: error: {exc}", file=sys.stderr)
        return 2
    print(summary.line(), flush=True)
    if summary.assignments and not cfg.quiet:
        print(scenario_line(summary.assignments))
    if summary.interrupted:
        return 130
    return 0 if summary.failed == 0 and summary.acked >= summary.sent else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m simulators`."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
