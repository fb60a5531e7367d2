"""`python -m simulators`: the same as `giamsat simulate`."""

from simulators.cli import main

raise SystemExit(main())
