"""`python -m ingest`: the ingest service alone, as a child process.

Reads settings from the environment (`GIAMSAT_DATABASE_URL`, `GIAMSAT_MQTT_URL`, the
`GIAMSAT_INGEST_*` keys, see config/giamsat.env.example); stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import sys

from config import Settings
from ingest.service import run_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on 127.0.0.1:PORT (default: none)")
    args = parser.parse_args(argv)
    settings = Settings()  # type: ignore[call-arg]  # from the environment
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    return run_forever(settings, metrics_port=args.metrics_port)


if __name__ == "__main__":
    sys.exit(main())
