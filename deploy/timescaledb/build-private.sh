#!/usr/bin/env bash
# Build TimescaleDB from a source tree into a PRIVATE copy of the PostgreSQL 15 tree.
#
#   deploy/timescaledb/build-private.sh SOURCE_DIR PREFIX
#
# SOURCE_DIR  a TimescaleDB source tree (e.g. `git archive 2.28.3 | tar -x -C SOURCE_DIR`; 2.29 dropped PostgreSQL 15)
# PREFIX      where the private tree goes, e.g. $HOME/pgts/2.28.3
#
# The system's PostgreSQL 15 (Debian layout: /usr/lib/postgresql/15, /usr/share/postgresql/15)
# is copied under PREFIX with the same layout, and the extension is installed there only
# (make install DESTDIR=PREFIX). PostgreSQL finds its share and lib directories relative to its
# own binary, so PREFIX/usr/lib/postgresql/15/bin/postgres loads the extension while the
# system's clusters (e.g. the one on port 5432) never see it: nothing under /usr is written.
#
# Then run the TimescaleDB tests with that tree:
#   GIAMSAT_PG_BINDIR=PREFIX/usr/lib/postgresql/15/bin .venv/bin/python -m pytest tests/schema
#
# Needs: postgresql-server-dev-15 (headers, pg_config), cmake >= 3.15, a C compiler, libssl-dev.
# Build load is kept low on shared machines: nice -n 15, JOBS (default 2) parallel compiles.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 SOURCE_DIR PREFIX" >&2
    exit 2
fi
SOURCE=$(cd "$1" && pwd)
PREFIX=$(mkdir -p "$2" && cd "$2" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
JOBS=${JOBS:-2}
SYS_LIB=/usr/lib/postgresql/$PG_MAJOR
SYS_SHARE=/usr/share/postgresql/$PG_MAJOR
PG_CONFIG=$SYS_LIB/bin/pg_config

for need in "$PG_CONFIG" "$SYS_SHARE" "$SOURCE/CMakeLists.txt" "$SOURCE/version.config"; do
    [[ -e $need ]] || { echo "missing $need (postgresql-server-dev-$PG_MAJOR? a TimescaleDB tree?)" >&2; exit 1; }
done
[[ $PREFIX != /usr* && $PREFIX != / ]] || { echo "PREFIX must not be a system directory" >&2; exit 1; }
command -v cmake >/dev/null || { echo "cmake is required (apt-get install cmake)" >&2; exit 1; }
# A release that dropped this PostgreSQL major (2.29 dropped 15) fails deep in the compile:
# say so first.
if ! grep -q "is_supported_pg_version_$PG_MAJOR(" "$SOURCE/src/compat/compat.h"; then
    echo "TimescaleDB $(sed -n 's/^version = //p' "$SOURCE/version.config") does not support" \
         "PostgreSQL $PG_MAJOR (src/compat/compat.h); 2.28.x is the last for 15" >&2
    exit 1
fi

# 1. The private PostgreSQL tree: a copy of the system's, same relative layout.
if [[ ! -x $PREFIX$SYS_LIB/bin/postgres ]]; then
    mkdir -p "$PREFIX$(dirname "$SYS_LIB")" "$PREFIX$(dirname "$SYS_SHARE")"
    cp -a "$SYS_LIB" "$PREFIX$(dirname "$SYS_LIB")/"
    cp -a "$SYS_SHARE" "$PREFIX$(dirname "$SYS_SHARE")/"
fi
# The server may run as another account (postgres when started by root): it must read the tree.
chmod -R a+rX "$PREFIX"
for dir in "$PREFIX" "$(dirname "$PREFIX")"; do chmod a+x "$dir" 2>/dev/null || true; done

# 2. Configure and build against the system headers (pg_config), full build (the Timescale
#    License part brings compression). No telemetry; no regression-test harness needed.
BUILD=$PREFIX/build
cmake -S "$SOURCE" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DPG_CONFIG="$PG_CONFIG" \
    -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF \
    -DUSE_TELEMETRY=OFF -DSEND_TELEMETRY_DEFAULT=OFF
nice -n 15 cmake --build "$BUILD" -j "$JOBS"

# 3. Install into the private tree only: pg_config's paths (/usr/lib/..., /usr/share/...)
#    prefixed with DESTDIR=PREFIX.
DESTDIR=$PREFIX cmake --install "$BUILD"
chmod -R a+rX "$PREFIX/usr"

# 4. Check: the private server sees the extension; the system tree is untouched.
ls "$PREFIX$SYS_SHARE/extension/timescaledb.control" >/dev/null
if ls "$SYS_SHARE/extension/timescaledb.control" >/dev/null 2>&1; then
    echo "warning: the system tree has a timescaledb.control (not installed by this script)" >&2
fi
echo "TimescaleDB $(sed -n 's/^version = //p' "$SOURCE/version.config") installed in $PREFIX"
echo "GIAMSAT_PG_BINDIR=$PREFIX$SYS_LIB/bin"
