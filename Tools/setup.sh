#!/usr/bin/env bash
# Installs what Tickwire needs on a Debian machine that has the Swift toolchain:
# libzmq (ZeroMQ), jemalloc (the daemon's allocator), SQLite (a benchmark baseline), tmux (the ticker's
# end-to-end test), gdb (stack dumps when a test run hangs), pyzmq (the Python subscriber example and its test);
# NATS: nats-server (the floor-wide bus and the replicated trade log; the tests start real clusters of it) with its
# C client libnats; chromium, chromium-driver and selenium (the monitor page's test in a real headless browser).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need=()
for pkg in libzmq3-dev libjemalloc-dev libsqlite3-dev libxxhash-dev tmux gdb python3-pip nats-server libnats-dev chromium chromium-driver; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
python3 -c "import zmq" 2>/dev/null || python3 -m pip install -q pyzmq || python3 -m pip install -q --break-system-packages pyzmq
python3 -c "import selenium" 2>/dev/null || python3 -m pip install -q selenium || python3 -m pip install -q --break-system-packages selenium
# nats-py: Tools/subscribe_nats.py, a NATS subscriber written from docs/PROTOCOL.md alone (and its test).
python3 -c "import nats" 2>/dev/null || python3 -m pip install -q nats-py || python3 -m pip install -q --break-system-packages nats-py
# polars, pyarrow, pandas, duckdb: the DataFrame tests read Tickwire's Arrow streams and Parquet datasets with each
# (Tests/TickwireStoreTests/ExportTests.swift, BarsTests.swift), and Tools/frames_peers.py measures against polars.
python3 -c "import polars, pyarrow, pandas, duckdb" 2>/dev/null || python3 -m pip install -q polars pyarrow pandas duckdb numpy \
    || python3 -m pip install -q --break-system-packages polars pyarrow pandas duckdb numpy
echo "tickwire: dependencies installed" >&2
