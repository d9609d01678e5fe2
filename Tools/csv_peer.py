#!/usr/bin/env python3
"""The peer of `tickwire bench store`'s CSV import: polars `read_csv` of the same tardis file.

Usage: csv_peer.py PATH [RUNS]. Prints one JSON object: the best of RUNS wall-clock seconds of
`pl.read_csv(PATH)` (every column parsed to its inferred type, all cores), the rows, and the versions.
"""
import json
import sys
import time

import polars as pl

path = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
best, rows = float("inf"), 0
for _ in range(runs):
    t0 = time.perf_counter()
    df = pl.read_csv(path)
    best = min(best, time.perf_counter() - t0)
    rows = df.height
    del df
print(json.dumps({"seconds": best, "rows": rows, "polars": pl.__version__, "threads": pl.thread_pool_size()}))
