#!/usr/bin/env bash
# Interleaved A/B of two tickwire-bench builds on the daemon's end-to-end path, for changes smaller than this shared
# machine's run-to-run noise: runs `tickwire-bench e2e --param only=daemon` with build A, then B, PAIRS times,
# and prints the pairwise-median ratios B/A of throughput and of CPU time per message (the steadier figure), then
# of the daemon's source and publisher threads and libzmq's I/O threads (the suite's thread account, BENCH-HISTORY
# E15), which show a change to one thread that the whole cannot resolve. Each run does ROUNDS rounds; the first
# round of each process is left out (start-up).
#
#   Tools/ab_e2e.sh OLD/.build/release/tickwire-bench NEW/.build/release/tickwire-bench [PAIRS=8] [ROUNDS=3]
#
# Build each side with `swift build -c release` (a git worktree for the old commit keeps the two apart).
set -euo pipefail
A=$1 B=$2 PAIRS=${3:-8} ROUNDS=${4:-3}
for i in $(seq 1 "$PAIRS"); do
  for side in A B; do
    bin=$A; [ "$side" = B ] && bin=$B
    "$bin" e2e --runs "$ROUNDS" --events 1000000 --param only=daemon 2>/dev/null | python3 -c "
import json, statistics, sys
d = json.load(sys.stdin)
t = {x['thread']: x['cpu_ns_per_msg'] for x in d.get('cpu_by_thread', [])}
print('$side', statistics.median(d['daemon_msgs_per_s'][1:]), statistics.median(d['daemon_cpu_ns_per_msg'][1:]),
      *(t.get(k, 0) for k in ('tw-source-zmq:t', 'tw-publisher', 'libzmq I/O threads')))"
  done
done | python3 -c "
import statistics as st, sys
rows = {'A': [], 'B': []}
for line in sys.stdin:
    side, *values = line.split()
    rows[side].append([float(v) for v in values])
pairs = list(zip(rows['A'], rows['B']))
for name, k in (('msgs/s', 0), ('CPU ns/msg', 1), ('source ns', 2), ('publisher ns', 3), ('I/O ns', 4)):
    if any(a[k] == 0 or b[k] == 0 for a, b in pairs): continue   # a build without the thread account
    r = [b[k] / a[k] for a, b in pairs]
    print('%-12s A %.0f  B %.0f  B/A pairwise median %.3f (%.3f-%.3f), %d pairs' % (
        name, st.median(a[k] for a, _ in pairs), st.median(b[k] for _, b in pairs), st.median(r), min(r), max(r), len(pairs)))
"
