#!/usr/bin/env python3
"""As-of join and storage peers for Tickwire's store, on the same synthetic market, in one run.

Generates the SyntheticMarket data (Sources/TickwireBenchSupport/SyntheticMarket.swift; BENCHMARKS.md) with numpy,
times polars join_asof, DuckDB ASOF JOIN and pandas merge_asof (backward, by symbol, every trade), measures the
Parquet zstd bytes per quote, then runs `tickwire-bench store` on the same data and prints one JSON object
with every figure and the ratios against the peers. The data is checked identical through a checksum the
Swift suite also prints.

    python3 Tools/asof_peers.py [--n 10000000] [--symbols 1000] [--runs 3] [--tickwire-bench .build/release/tickwire-bench]

Peers get their most favourable setup: integer symbol keys, frames already sorted as each requires (outside
the timed region), tables already loaded into DuckDB.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def ensure(*modules):
    missing = []
    for m in modules:
        try:
            __import__(m)
        except ImportError:
            missing.append(m)
    if missing:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *missing])


ensure("numpy", "polars", "duckdb", "pandas", "pyarrow")
import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

T0 = 1_767_623_400_000_000_000
STEP = 2_000_000
TICK = 1_000_000
E8 = 100_000_000
U = np.uint64


def splitmix64(x):
    z = x + U(0x9E3779B97F4A7C15)
    z = (z ^ (z >> U(30))) * U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U(27))) * U(0x94D049BB133111EB)
    return z ^ (z >> U(31))


def r(stream, i):
    return (splitmix64(i.astype(np.uint64) * U(16) + U(stream)) >> U(1)).astype(np.int64)


def market(n, symbols):
    """Quotes and trades as dicts of numpy columns, exactly as SyntheticMarket generates them."""
    assert n % symbols == 0, "n must be a multiple of the symbol count"
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.int64)
        sym, k = i % symbols, i // symbols
        q_et = T0 + k * STEP + r(0, i) % STEP
        q_kt = q_et + 20_000 + r(1, i) % 100_000
        walk = (r(2, i) % 5 - 2).reshape(n // symbols, symbols).cumsum(axis=0).ravel()
        bid = (10_000 + 100 * sym + walk) * TICK
        quotes = dict(sym=sym.astype(np.int32), event_time=q_et, known_time=q_kt, bid=bid,
                      bid_size=(1 + r(4, i) % 20) * 100 * E8, ask=bid + (1 + r(3, i) % 3) * TICK,
                      ask_size=(1 + r(5, i) % 20) * 100 * E8)
        t_et = T0 + k * STEP + r(8, i) % STEP
        trades = dict(sym=sym.astype(np.int32), event_time=t_et, known_time=t_et + 20_000 + r(9, i) % 100_000,
                      price=(10_000 + 100 * sym + r(10, i) % 50) * TICK, size=(1 + r(11, i) % 10) * 100 * E8,
                      side=np.where(r(12, i) % 2 == 0, 1, 2).astype(np.int8), trade_id=i + 1)
        checksum = int((quotes["bid"] + quotes["known_time"]).sum() + (trades["price"] + trades["known_time"]).sum())
    checksum = (checksum + 2**63) % 2**64 - 2**63
    return quotes, trades, checksum


def best(f, runs):
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000_000, help="trades and quotes each (default 10M)")
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tickwire-bench", dest="tickwire", default=".build/release/tickwire-bench", help="the tickwire-bench binary; '' to skip it")
    args = ap.parse_args()

    quotes, trades, checksum = market(args.n, args.symbols)
    n = args.n
    report = {"data": {"trades": n, "quotes": n, "symbols": args.symbols, "checksum": checksum},
              "versions": {"polars": pl.__version__, "duckdb": duckdb.__version__, "pandas": pd.__version__,
                           "pyarrow": pa.__version__}}

    # polars: sorted by (sym, event_time), which join_asof with `by` accepts without a sort.
    qp = pl.DataFrame(quotes).sort(["sym", "event_time"])
    tp = pl.DataFrame(trades).sort(["sym", "event_time"])
    secs, out = best(lambda: tp.join_asof(qp, on="event_time", by="sym", strategy="backward", check_sortedness=False), args.runs)
    report["polars_join_asof"] = {"seconds": secs, "trades_per_s": n / secs, "matched": int(out["bid"].is_not_null().sum())}
    del out

    # DuckDB: native tables, ASOF JOIN materialized into a table.
    con = duckdb.connect()
    con.execute(f"PRAGMA threads={os.cpu_count()}")
    qa, ta = qp.to_arrow(), tp.to_arrow()
    con.execute("CREATE TABLE quotes AS SELECT * FROM qa")
    con.execute("CREATE TABLE trades AS SELECT * FROM ta")
    sql = ("CREATE OR REPLACE TABLE j AS SELECT t.*, q.event_time AS quote_event_time, q.bid, q.bid_size, q.ask, q.ask_size "
           "FROM trades t ASOF LEFT JOIN quotes q ON t.sym = q.sym AND t.event_time >= q.event_time")
    secs, _ = best(lambda: con.execute(sql), args.runs)
    matched = con.execute("SELECT count(bid) FROM j").fetchone()[0]
    report["duckdb_asof_join"] = {"seconds": secs, "trades_per_s": n / secs, "matched": int(matched)}
    con.close()

    # pandas: merge_asof needs both frames sorted by the `on` key globally.
    qd = pd.DataFrame(quotes).sort_values("event_time", kind="stable")
    td = pd.DataFrame(trades).sort_values("event_time", kind="stable")
    secs, out = best(lambda: pd.merge_asof(td, qd, on="event_time", by="sym", direction="backward"), max(1, args.runs - 1))
    report["pandas_merge_asof"] = {"seconds": secs, "trades_per_s": n / secs, "matched": int(out["bid"].notna().sum())}
    del out, qd, td

    # Parquet zstd bytes per quote (sorted like the store: by symbol, then time).
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "quotes.parquet")
        pq.write_table(qa, path, compression="zstd")
        report["parquet_zstd_bytes_per_quote"] = os.path.getsize(path) / n

    if args.tickwire:
        env = dict(os.environ, TICKWIRE_STORE_N=str(n), RUNS=str(args.runs))
        out = subprocess.run([args.tickwire, "store"], env=env, check=True, capture_output=True, text=True).stdout
        swift = json.loads(out[out.index("{"):])
        report["tickwire"] = swift
        same = swift["scan"]["checksum"] == checksum
        report["same_data"] = same
        tw = swift["asof_join"]["trades_per_s"]
        report["ratios"] = {
            "asof_join_vs_polars": tw / report["polars_join_asof"]["trades_per_s"],
            "asof_join_vs_duckdb": tw / report["duckdb_asof_join"]["trades_per_s"],
            "asof_join_vs_pandas": tw / report["pandas_merge_asof"]["trades_per_s"],
            "bytes_per_quote_vs_parquet_zstd": swift["bytes_per_quote"] / report["parquet_zstd_bytes_per_quote"],
            "matched_equal": swift["asof_join"]["matched"] == report["polars_join_asof"]["matched"],
        }
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
