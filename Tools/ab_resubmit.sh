#!/usr/bin/env bash
# Interleaved A/B of two `tickwire` builds on a resubmission (a client's resend after a failover): for each build in
# turn, a fresh `tickwire run`, then `tickwire trade submit --file` of TRADES trades twice against it. The first
# submission journals them; the second is answered trade by trade as duplicates (retry index, then the journal).
# Prints each round's rates, first and again, the medians' ratio again ÷ first per build, and B ÷ A per round.
# With B_CONFIG, B's daemons get those config lines too: one build against itself with another setting, e.g.
#
#   Tools/ab_resubmit.sh OLD/.build/release/tickwire NEW/.build/release/tickwire [ROUNDS=3] [TRADES=200000]
#   B_CONFIG=$'[trades]\ncpus = [0]' Tools/ab_resubmit.sh BIN BIN 8
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-3} TRADES=${4:-200000}
work=$(mktemp -d /tmp/tw-resubmit-XXXXXX)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$work"' EXIT
python3 - "$work/trades.jsonl" "$TRADES" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write('{"desk":"DESK%d","symbol":"%s","side":"%s","qty":%d,"price":"%.2f","id":"resubmit-%d"}\n'
                % (i % 8, ["AAPL", "MSFT", "NVDA", "AMZN"][i % 4], ["buy", "sell"][i % 2], 1 + i % 500, 187.25 + (i % 997) * 0.01, i))
PY
cp "$(dirname "$0")/trade_daemon.toml" "$work/daemon.toml"
{ cat "$work/daemon.toml"; printf '\n%s\n' "${B_CONFIG:-}"; } > "$work/daemon-B.toml"
cp "$work/daemon.toml" "$work/daemon-A.toml"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
submit() {  # BINARY DATA ENDPOINT: prints trades a second
  local s e
  s=$(date +%s%N)
  "$1" trade submit --file "$work/trades.jsonl" --data "$2" --connect "$3" > "$work/out"
  e=$(date +%s%N)
  [ "$(grep -c '"seq":' "$work/out")" -eq "$TRADES" ] || { echo "not every trade was acknowledged" >&2; exit 1; }
  echo $(( TRADES * 1000000000 / (e - s) ))
}
for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin=$A; [ "$side" = B ] && bin=$B
    data="$work/data-$side-$round" trades="tcp://127.0.0.1:$(port)"
    "$bin" run --config "$work/daemon-$side.toml" --data "$data" --trades "$trades" --pub "tcp://127.0.0.1:$(port)" \
      --metrics "127.0.0.1:$(port)" > "$data.log" 2>&1 &
    daemon=$!
    for _ in $(seq 1 300); do grep -qs "tickwire running" "$data.log" && break; sleep 0.1; done
    first=$(submit "$bin" "$data" "$trades")
    again=$(submit "$bin" "$data" "$trades")
    kill "$daemon"; wait "$daemon" || true
    echo "$side $first $again"
  done
done | python3 -c "
import statistics as st, sys
rows = {'A': [], 'B': []}
for line in sys.stdin:
    side, first, again = line.split()
    rows[side].append((int(first), int(again)))
    print('%s first %7d/s  again %7d/s' % (side, int(first), int(again)))
for side, r in rows.items():
    f, a = st.median(x for x, _ in r), st.median(y for _, y in r)
    print('%s medians: first %.0f/s, again %.0f/s, again/first %.2f' % (side, f, a, a / f))
ratios = [b[0] / a[0] for a, b in zip(rows['A'], rows['B'])]
print('first submission, B / A by round: %s; median %.2f' % (' '.join('%.2f' % x for x in ratios), st.median(ratios)))
"
