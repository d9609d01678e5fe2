#!/usr/bin/env bash
# How long `tickwire run` takes to start (launch to "tickwire running") on a data directory that already holds a
# journal and a retry index, for builds A and B taking turns: what a restart after a crash costs before trading.
# The first start of each creates its directory (not timed); prints each round and the medians in ms.
#
#   [CONFIG=daemon.toml] Tools/start_time.sh OLD/.build/release/tickwire NEW/.build/release/tickwire [ROUNDS=6]
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-6}
work=$(mktemp -d /tmp/tw-start-XXXXXX)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start() {  # BINARY DATA: prints ms to "tickwire running"
  local s e log="$2.$RANDOM.log"
  s=$(date +%s%N)
  "$1" run ${CONFIG:+--config "$CONFIG"} --data "$2" --trades "tcp://127.0.0.1:$(port)" --pub "tcp://127.0.0.1:$(port)" --metrics "127.0.0.1:$(port)" > "$log" 2>&1 &
  local pid=$!
  until grep -qs "tickwire running" "$log"; do sleep 0.005; done
  e=$(date +%s%N)
  kill "$pid"; wait "$pid" || true
  echo $(( (e - s) / 1000000 ))
}
start "$A" "$work/a" > /dev/null
start "$B" "$work/b" > /dev/null
for _ in $(seq 1 "$ROUNDS"); do echo "$(start "$A" "$work/a") $(start "$B" "$work/b")"; done | python3 -c "
import statistics as st, sys
rows = [tuple(map(int, l.split())) for l in sys.stdin]
for a, b in rows: print('A %4d ms  B %4d ms' % (a, b))
print('medians: A %.0f ms, B %.0f ms' % (st.median(a for a, _ in rows), st.median(b for _, b in rows)))"
