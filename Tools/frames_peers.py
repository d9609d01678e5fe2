#!/usr/bin/env python3
"""Tickwire's results into a polars DataFrame, beside polars reading the same data from Parquet, in one run.

On the synthetic market of BENCHMARKS.md (Tools/asof_peers.py generates it with numpy, `tickwire-bench frames`
writes the same events into a store and leaves it), times, alternating the two sides, --runs rounds:

- replay: `tickwire replay --format arrow` piped into `pl.read_ipc_stream`, every event in replay order,
  against `pl.read_parquet` of the same events + a sort by event time (the peer gets one sort key, not three);
- as-of join: `tickwire query asof-join --format arrow` piped into `pl.read_ipc_stream`, against
  `pl.read_parquet` of trades and quotes (each written sorted by event time) + `join_asof` backward by symbol;
- replay_file, asof_join_file: the same through a file, `--format arrow-file --out F` then `pl.read_ipc(F)`,
  which maps the file instead of reading a pipe (the file is removed after each round, outside the timing); and,
  in the same rounds, the machine's floor for that route: writing as many bytes as Tickwire's file holds to a
  fresh file in the same directory (one 8 MiB buffer written over and over), which any producer of the file pays
  (`floor_rounds`, `median_ratio_to_floor` = floor seconds / Tickwire seconds);
- replay_binary: `tickwire replay --format binary` (the wire format a backtest reads) to /dev/null, against the
  same polars read_parquet + sort (issue 16: "full binary replay ≥ polars read_parquet + sort").

Both sides end with a polars DataFrame in this process. The Parquet files are written by pyarrow (snappy, its
default) outside the timed region. Prints one JSON object: both sides, `tickwire-bench frames`' own figures, and
ratios (peer seconds / Tickwire seconds: above 1 means Tickwire is faster): of the best rounds (`ratio`), of
each round (`round_ratios`, the two sides of a round run back to back) and of the medians (`median_ratio`).

    python3 Tools/frames_peers.py [--n 2000000] [--symbols 1000] [--runs 3] [--tickwire .build/release/tickwire]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from asof_peers import ensure, market  # noqa: E402

ensure("numpy", "polars", "pyarrow")
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2_000_000, help="trades and quotes each (default 2M)")
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tickwire", default=".build/release/tickwire")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="frames-peers-") as d:
        bench = subprocess.run([args.tickwire + "-bench", "frames", "--runs", str(args.runs), "--param", f"n={args.n}",
                                "--param", f"symbols={args.symbols}", "--param", f"store={d}"],
                               check=True, capture_output=True, text=True).stdout
        report = {"tickwire_bench_frames": json.loads(bench[bench.index("{"):]),
                  "versions": {"polars": pl.__version__, "pyarrow": pa.__version__},
                  "data": {"trades": args.n, "quotes": args.n, "symbols": args.symbols}}

        quotes, trades, _ = market(args.n, args.symbols)
        q = pa.table(quotes).sort_by("event_time")
        t = pa.table(trades).sort_by("event_time")
        pq.write_table(q, f"{d}/quotes.parquet")
        pq.write_table(t, f"{d}/trades.parquet")
        # Every event in one file, the columns a replay gives a quant: kind, times, trade and quote fields.
        n = args.n
        events = pa.table({
            "sym": np.concatenate([quotes["sym"], trades["sym"]]),
            "kind": pa.array(["QUOTE"] * n + ["TRADE"] * n).dictionary_encode(),
            "event_time": np.concatenate([quotes["event_time"], trades["event_time"]]),
            "known_time": np.concatenate([quotes["known_time"], trades["known_time"]]),
            "price": pa.array(np.concatenate([np.zeros(n, np.int64), trades["price"]]), mask=np.arange(2 * n) < n),
            "size": pa.array(np.concatenate([np.zeros(n, np.int64), trades["size"]]), mask=np.arange(2 * n) < n),
            "side": pa.array(np.concatenate([np.zeros(n, np.int8), trades["side"]]), mask=np.arange(2 * n) < n),
            "trade_id": pa.array(np.concatenate([np.zeros(n, np.int64), trades["trade_id"]]), mask=np.arange(2 * n) < n),
            "bid": pa.array(np.concatenate([quotes["bid"], np.zeros(n, np.int64)]), mask=np.arange(2 * n) >= n),
            "bid_size": pa.array(np.concatenate([quotes["bid_size"], np.zeros(n, np.int64)]), mask=np.arange(2 * n) >= n),
            "ask": pa.array(np.concatenate([quotes["ask"], np.zeros(n, np.int64)]), mask=np.arange(2 * n) >= n),
            "ask_size": pa.array(np.concatenate([quotes["ask_size"], np.zeros(n, np.int64)]), mask=np.arange(2 * n) >= n),
        })
        pq.write_table(events, f"{d}/events.parquet")
        del events, q, t

        window = ["--from", "2026-01-05", "--to", "2026-01-06", "--data", d, "--format", "arrow"]

        def tickwire_frame(cmd):
            p = subprocess.Popen([args.tickwire, *cmd, *window], stdout=subprocess.PIPE)
            df = pl.read_ipc_stream(p.stdout)
            if p.wait() != 0:
                raise SystemExit(f"tickwire {' '.join(cmd)} failed")
            return df

        result = f"{d}/result.arrow"

        result_bytes = [0]   # the size of the file Tickwire wrote last (the floor of the same round writes as much)

        def tickwire_file_frame(cmd):
            subprocess.run([args.tickwire, *cmd, *window[:-1], "arrow-file", "--out", result], check=True)
            result_bytes[0] = os.path.getsize(result)
            return pl.read_ipc(result)

        zeros = memoryview(bytes(8 << 20))

        def write_floor():
            """Writes as many bytes as Tickwire's file of the round held to a fresh file; no DataFrame (None)."""
            left = result_bytes[0]
            fd = os.open(result, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            while left > 0:
                left -= os.write(fd, zeros[:min(left, len(zeros))])
            os.close(fd)

        sides = {
            "replay": (lambda: tickwire_frame(["replay", "--subjects", ">"]),
                       lambda: pl.read_parquet(f"{d}/events.parquet").sort("event_time")),
            "asof_join": (lambda: tickwire_frame(["query", "asof-join", "--trades", "MD.SYN.*.TRADE", "--quotes", "MD.SYN.*.QUOTE"]),
                          lambda: pl.read_parquet(f"{d}/trades.parquet").join_asof(
                              pl.read_parquet(f"{d}/quotes.parquet"), on="event_time", by="sym", strategy="backward")),
        }
        sides["replay_file"] = (lambda: tickwire_file_frame(["replay", "--subjects", ">"]), sides["replay"][1],
                                write_floor)
        def tickwire_binary_replay():
            """The binary records to /dev/null: no DataFrame on this side (None)."""
            subprocess.run([args.tickwire, "replay", "--subjects", ">", *window[:-1], "binary"], stdout=subprocess.DEVNULL, check=True)

        sides["replay_binary"] = (tickwire_binary_replay, sides["replay"][1])
        sides["asof_join_file"] = (lambda: tickwire_file_frame(["query", "asof-join", "--trades", "MD.SYN.*.TRADE",
                                                                "--quotes", "MD.SYN.*.QUOTE"]), sides["asof_join"][1],
                                   write_floor)
        for name, (ours, peer, *floor) in sides.items():
            rounds = {"tickwire": [], "polars": []} | ({"floor": []} if floor else {})
            shape = {}
            for _ in range(args.runs):
                for side, f in (("tickwire", ours), ("polars", peer), *((("floor", floor[0]),) if floor else ())):
                    t0 = time.perf_counter()
                    df = f()
                    rounds[side].append(time.perf_counter() - t0)
                    if df is not None:
                        shape[side] = df.shape
                        if name.startswith("asof_join"):
                            shape[side + "_matched"] = int(df["bid"].is_not_null().sum())
                        del df
                    if os.path.exists(result):
                        os.remove(result)
            best = {k: min(v) for k, v in rounds.items()}
            median = {k: statistics.median(v) for k, v in rounds.items()}
            report[name] = {"tickwire_seconds": best["tickwire"], "polars_seconds": best["polars"],
                            "ratio": best["polars"] / best["tickwire"],
                            "tickwire_rounds": rounds["tickwire"], "polars_rounds": rounds["polars"],
                            "round_ratios": [p / t for t, p in zip(rounds["tickwire"], rounds["polars"])],
                            "median_ratio": median["polars"] / median["tickwire"],
                            "shapes": {k: list(v) if isinstance(v, tuple) else v for k, v in shape.items()}}
            if floor:
                report[name] |= {"floor_rounds": rounds["floor"],
                                 "floor_bytes": result_bytes[0],
                                 "median_ratio_to_floor": median["floor"] / median["tickwire"],
                                 "floor_median_ratio_to_polars": median["polars"] / median["floor"]}
        report["load_average"] = os.getloadavg()
        report["command"] = " ".join([sys.argv[0].split("/")[-1]] + sys.argv[1:])
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
