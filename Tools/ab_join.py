#!/usr/bin/env python3
"""Two (or more) builds of `tickwire` side by side on the as-of join into polars through a file, rounds taking turns.

Each round, in a rotating order, runs every binary's `tickwire query asof-join --format arrow-file --out F` on the
same store and reads F with `pl.read_ipc` (which maps it); F is removed after each, outside the timing. Prints the
median and quartiles of each binary's seconds and each one's median ratio to the first (first ÷ other: above 1
means the other is faster). The store is the one `Tools/frames_peers.py` times (`tickwire-bench frames` leaves it);
BENCH-HISTORY D8 used it for the gathered Arrow bodies and the batch size.

    python3 Tools/ab_join.py --data DIR [--rounds 30] NAME=BINARY NAME=BINARY [...]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import polars as pl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="the data directory holding store/ (MD.SYN, 2026-01-05)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("binaries", nargs="+", help="NAME=PATH, the first the baseline")
    args = ap.parse_args()
    bins = dict(b.split("=", 1) for b in args.binaries)
    out = os.path.join(tempfile.mkdtemp(prefix="tickwire-abjoin-"), "join.arrow")
    cmd = ["query", "asof-join", "--trades", "MD.SYN.*.TRADE", "--quotes", "MD.SYN.*.QUOTE", "--from", "2026-01-05",
           "--to", "2026-01-06", "--data", args.data, "--format", "arrow-file", "--out", out]
    names = list(bins)
    seconds = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            subprocess.run([bins[n], *cmd], check=True)
            df = pl.read_ipc(out)
            seconds[n].append(time.perf_counter() - t0)
            del df
            os.remove(out)
    os.rmdir(os.path.dirname(out))
    base = statistics.median(seconds[names[0]])
    report = {n: {"median_s": statistics.median(v), "quartiles_s": statistics.quantiles(v, n=4),
                  "median_ratio_to_first": base / statistics.median(v)} for n, v in seconds.items()}
    report["rounds"] = args.rounds
    report["load_average"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
