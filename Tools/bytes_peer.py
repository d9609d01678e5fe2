#!/usr/bin/env python3
"""Bytes per event on disk: Tickwire's store against zstd Parquet of the same tardis CSV files (issue 16: "bytes per
event stay ≤ 0.75× zstd Parquet").

Generates (seeded, numpy) a tardis trades CSV and a tardis quotes CSV in the shape of tardis.dev's exports
(`../shared/data/tardis_*_nautilus.csv` headers): N events each over S symbols on one day, each symbol's prices a
random walk in ticks of 0.01, its trade ids rising by 1 or 2, sizes exponential in thousandths. Imports both with
`tickwire import` into a fresh data directory and counts every file of it (columns, indexes, dictionaries, the
import ledger); writes what `pl.read_csv` makes of each file as Parquet with polars' zstd (its default level) and
counts those. Prints one JSON object.

    python3 Tools/bytes_peer.py [--n 5000000] [--symbols 500] [--tickwire .build/release/tickwire] [--dir DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import polars as pl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5_000_000, help="events per file (trades, quotes)")
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--tickwire", default=".build/release/tickwire")
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed after)")
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="tickwire-bytes-")
    os.makedirs(work, exist_ok=True)
    try:
        report = run(args, work)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2, sort_keys=True))


def run(args, work):
    rng = np.random.default_rng(7)
    n, s = args.n, args.symbols
    names = np.array([f"SYM{i:03d}USDT" for i in range(s)])
    day = 1582329600000000  # 2020-02-22, microseconds as tardis writes them
    base = np.round(rng.uniform(1, 50000, s) * 100).astype(np.int64)

    def walk(sym):
        """Per symbol, a random walk of the price in ticks (hundredths) from its base."""
        steps = rng.integers(-3, 4, len(sym)).astype(np.int64)
        out = np.empty(len(sym), dtype=np.int64)
        for k in range(s):
            idx = np.nonzero(sym == k)[0]
            out[idx] = base[k] + np.cumsum(steps[idx])
        return np.maximum(out, 1)

    def thousandths():
        return np.maximum(1, np.round(rng.exponential(1000, n))).astype(np.int64)

    t = day + np.sort(rng.integers(0, 86_400_000_000, n))
    sym = rng.integers(0, s, n)
    ids = np.empty(n, dtype=np.int64)
    for k in range(s):
        idx = np.nonzero(sym == k)[0]
        ids[idx] = 1_000_000 * k + rng.integers(1, 3, len(idx)).cumsum()
    trades = pl.DataFrame({
        "exchange": ["binance-futures"] * n, "symbol": names[sym], "timestamp": t,
        "local_timestamp": t + rng.integers(100, 400_000, n), "id": ids,
        "side": np.where(rng.random(n) < 0.5, "buy", "sell"), "price": walk(sym) / 100.0, "amount": thousandths() / 1000.0,
    }).with_columns(pl.col("price").round(2).cast(pl.Utf8), pl.col("amount").round(3).cast(pl.Utf8))
    t = day + np.sort(rng.integers(0, 86_400_000_000, n))
    sym = rng.integers(0, s, n)
    bid = walk(sym)
    spread = np.maximum(1, base[sym] // 10_000)
    quotes = pl.DataFrame({
        "exchange": ["binance-futures"] * n, "symbol": names[sym], "timestamp": t,
        "local_timestamp": t + rng.integers(100, 400_000, n), "ask_amount": thousandths() / 1000.0,
        "ask_price": (bid + spread) / 100.0, "bid_price": bid / 100.0, "bid_amount": thousandths() / 1000.0,
    }).with_columns([pl.col(c).round(3 if "amount" in c else 2).cast(pl.Utf8)
                     for c in ("ask_amount", "ask_price", "bid_price", "bid_amount")])
    files = {"trades": f"{work}/trades.csv", "quotes": f"{work}/quotes.csv"}
    trades.write_csv(files["trades"])
    quotes.write_csv(files["quotes"])
    del trades, quotes

    data = f"{work}/data"
    subprocess.run([args.tickwire, "import", "--source", f"tardis-trades:{files['trades']}",
                    "--source", f"tardis-quotes:{files['quotes']}", "--data", data], check=True)
    store = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)

    parquet = {}
    for kind, path in files.items():
        out = f"{work}/{kind}.parquet"
        pl.read_csv(path).write_parquet(out, compression="zstd")
        parquet[kind] = os.path.getsize(out)
    events = 2 * n
    return {
        "events": events, "symbols": s,
        "tickwire_bytes": store, "tickwire_bytes_per_event": store / events,
        "parquet_zstd_bytes": parquet, "parquet_zstd_bytes_per_event": sum(parquet.values()) / events,
        "ratio": store / sum(parquet.values()),
        "polars": pl.__version__,
        "command": "python3 Tools/bytes_peer.py --n %d --symbols %d" % (n, s),
    }


if __name__ == "__main__":
    main()
