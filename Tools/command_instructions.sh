#!/usr/bin/env bash
# Instructions a trade of `tickwire trade submit --file` (all its threads, user space; the kernel is not counted),
# by valgrind's callgrind: the command submits 2,000 and then 20,000 trades to a running daemon, and the difference
# over the 18,000 more is the cost a trade, start-up apart. Prints the total and the functions that take most,
# named from the unstripped binary (callgrind is given a stripped copy: the Swift debug info stops valgrind).
# Deterministic, unlike a rate on this shared VM: the way to A/B a change to the command (BENCH-HISTORY S6, S8).
#
#   Tools/command_instructions.sh [BINARY=.build/release/tickwire] [TOP=15]      (needs valgrind: apt-get install valgrind)
set -euo pipefail
BIN=$(realpath "${1:-.build/release/tickwire}") TOP=${2:-15}
work=$(mktemp -d /tmp/tw-instr-XXXXXX)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$work"' EXIT
cp "$BIN" "$work/tickwire" && strip "$work/tickwire"
cp "$(dirname "$0")/trade_daemon.toml" "$work/daemon.toml"
python3 - "$work" <<'PY'
import sys
for name, n in (("small", 2000), ("large", 20000)):
    with open(f"{sys.argv[1]}/{name}.jsonl", "w") as f:
        for i in range(n):
            f.write('{"desk":"DESK%d","symbol":"%s","side":"%s","qty":%d,"price":"%.2f","id":"%s-%d"}\n'
                    % (i % 8, ["AAPL", "MSFT", "NVDA", "AMZN"][i % 4], ["buy", "sell"][i % 2], 1 + i % 500, 187.25 + (i % 997) * 0.01, name, i))
PY
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
trades="tcp://127.0.0.1:$(port)"
"$BIN" run --config "$work/daemon.toml" --data "$work/data" --trades "$trades" --pub "tcp://127.0.0.1:$(port)" \
  --metrics "127.0.0.1:$(port)" > "$work/daemon.log" 2>&1 &
for _ in $(seq 1 300); do grep -qs "tickwire running" "$work/daemon.log" && break; sleep 0.1; done
for name in small large; do
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" "$work/tickwire" trade submit --file "$work/$name.jsonl" \
    --data "$work/data" --connect "$trades" > "$work/$name.acks" 2> "$work/$name.err"
  callgrind_annotate --inclusive=no --threshold=99.9 "$work/$name.out" > "$work/$name.txt" 2>/dev/null
done
[ "$(grep -c '"seq":' "$work/large.acks")" -eq 20000 ] || { echo "not every trade was acknowledged" >&2; exit 1; }
nm "$BIN" > "$work/symbols"
python3 - "$work" "$TOP" <<'PY'
import re, subprocess, sys
work, top = sys.argv[1], int(sys.argv[2])
def costs(name):
    d = {}
    for line in open(f"{work}/{name}.txt"):
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            d[m.group(2)] = d.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return d
small, large = costs("small"), costs("large")
per = {k: (large.get(k, 0) - small.get(k, 0)) / 18000 for k in set(small) | set(large)}
addresses = {}
for line in open(f"{work}/symbols"):
    parts = line.split()
    if len(parts) == 3: addresses[int(parts[0], 16)] = parts[2]
def name(k):
    m = re.match(r"\?\?\?:0x([0-9a-f]+) \[.*/tickwire\]", k)
    if not m or int(m.group(1), 16) not in addresses: return k
    return subprocess.run(["swift", "demangle", "--simplified", "--compact", addresses[int(m.group(1), 16)]], capture_output=True, text=True).stdout.strip() or k
print(f"instructions a trade: {sum(per.values()):.0f}")
for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
    print(f"{v:8.0f}  {name(k)[:140]}")
PY
