import Foundation
import Testing
import TickwireTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The README's DataFrame one-liners through the real binary and a real pipe: `--format arrow` on standard
/// output straight into polars and pandas, and the Parquet dataset into DuckDB (issue 16, item 4).
@Suite(.timeLimit(.minutes(5))) struct FramesCLITests {
    static let fixtures = packageRoot + "/Tests/Fixtures"

    /// Runs a shell pipeline (bounded); `tickwire` in it is the built binary.
    static func sh(_ pipeline: String, seconds: Double = 120) throws -> (status: Int32, stdout: String, stderr: String) {
        let c = try ChildProcess("/bin/sh", ["-c", "set -e; " + pipeline.replacingOccurrences(of: "tickwire ", with: tickwireBinary + " ")])
        guard let status = c.wait(seconds: seconds) else {
            c.signal(SIGKILL)
            return (-1, c.stdout, c.stderr + "\n(timed out)")
        }
        return (status, c.stdout, c.stderr)
    }

    @Test func arrowOnStandardOutputGoesStraightIntoPolarsAndPandas() throws {
        let data = temporaryDirectory("frames-cli")
        defer { try? FileManager.default.removeItem(atPath: data) }
        let imported = try DaemonProcess.tickwire(["import", "--data", data, "--source", "tardis-trades:\(Self.fixtures)/tardis_trades_nautilus.csv",
                                                   "--source", "tardis-quotes:\(Self.fixtures)/tardis_quotes_nautilus.csv"], seconds: 120)
        try #require(imported.status == 0, "\(imported)")
        let window = "--from 2020-02-22 --to 2020-02-23 --data \(data)"

        var r = try Self.sh("""
            tickwire replay --subjects 'MD.>' \(window) --format arrow | python3 -c 'import sys, polars as pl; df = pl.read_ipc_stream(sys.stdin.buffer); print(df.shape, df.schema["price"], df.schema["known_time"])'
            """)
        #expect(r.status == 0 && r.stdout == "(19998, 18) Decimal(precision=18, scale=8) Datetime(time_unit='ns', time_zone='UTC')\n", "\(r)")

        r = try Self.sh("""
            tickwire query asof-join --trades 'MD.*.BTCUSDT.TRADE' --quotes 'MD.*.BTCUSDT.QUOTE' \(window) --format arrow | python3 -c 'import sys, pyarrow as pa; df = pa.ipc.open_stream(sys.stdin.buffer).read_pandas(); print(len(df), list(df.columns)[-6:], df["side"].dtype)'
            """)
        #expect(r.status == 0 && r.stdout == "9999 ['quote_event_time', 'quote_known_time', 'bid', 'bid_size', 'ask', 'ask_size'] category\n", "\(r)")

        // The decimals' width: 128 on request (for readers before Arrow 18), anything else refused by name.
        r = try Self.sh("""
            tickwire replay --subjects 'MD.>' \(window) --format arrow --arrow-decimal 128 | python3 -c 'import sys, pyarrow as pa; print(pa.ipc.open_stream(sys.stdin.buffer).schema.field("price").type)'
            """)
        #expect(r.status == 0 && r.stdout == "decimal128(18, 8)\n", "\(r)")
        r = try Self.sh("tickwire replay --subjects 'MD.>' \(window) --format arrow --arrow-decimal 32")
        #expect(r.status != 0 && r.stdout.isEmpty && r.stderr.contains("--arrow-decimal must be 64 or 128, not 32"), "\(r)")

        r = try Self.sh("""
            tickwire query bars --subjects 'MD.*.BTCUSDT.TRADE' --interval 1m \(window) --format arrow | python3 -c 'import sys, polars as pl; df = pl.read_ipc_stream(sys.stdin.buffer); print(df["trades"].sum(), df.columns)'
            """)
        #expect(r.status == 0 && r.stdout == "9999 ['subject', 'bar_start', 'open', 'high', 'low', 'close', 'volume', 'vwap', 'trades']\n", "\(r)")

        // The IPC file format, which polars maps instead of reading: the same table as the stream.
        r = try Self.sh("""
            tickwire replay --subjects 'MD.>' \(window) --format arrow-file --out \(data)/replay.arrow
            tickwire replay --subjects 'MD.>' \(window) --format arrow --out \(data)/replay.arrows
            tickwire query asof-join --trades 'MD.*.BTCUSDT.TRADE' --quotes 'MD.*.BTCUSDT.QUOTE' \(window) --format arrow-file --out \(data)/join.arrow
            tickwire query asof-join --trades 'MD.*.BTCUSDT.TRADE' --quotes 'MD.*.BTCUSDT.QUOTE' \(window) --format arrow --out \(data)/join.arrows
            python3 -c 'import polars as pl; d = "\(data)"; print([pl.read_ipc(f"{d}/{n}.arrow").equals(pl.read_ipc_stream(f"{d}/{n}.arrows")) for n in ("replay", "join")])'
            """)
        #expect(r.status == 0 && r.stdout == "[True, True]\n", "\(r)")

        r = try Self.sh("""
            tickwire export --subjects 'MD.>' \(window) --format parquet --out \(data)/md-parquet
            python3 -c "import duckdb; print(duckdb.sql(\\"SELECT venue, count(*) FROM read_parquet('\(data)/md-parquet/**/*.parquet', hive_partitioning = true) GROUP BY venue\\").fetchall())"
            """)
        #expect(r.status == 0 && r.stdout == "[('BINANCE-FUTURES', 19998)]\n", "\(r)")

        // Each output records the as-of it used (schema / file metadata `tickwire`); run again at that as-of, after
        // a correction made since, the output is byte for byte the same.
        r = try Self.sh("""
            tickwire replay --subjects 'MD.>' \(window) --format arrow --out \(data)/first.arrows
            python3 -c 'import json, pyarrow as pa; m = pa.ipc.open_stream("\(data)/first.arrows").schema.metadata; print(json.loads(m[b"tickwire"])["tickwire"]["as_of"])'
            """)
        let asOf = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(r.status == 0 && Int64(asOf) != nil, "\(r)")
        try #"{"subject":"MD.BINANCE-FUTURES.BTCUSDT.TRADE","event_time":1582329602111000000,"trade_id":42377944,"set":{"price":"1"},"author":"test","reason":"metadata"}"#
            .write(toFile: data + "/fix.jsonl", atomically: true, encoding: .utf8)
        r = try Self.sh("""
            tickwire correct --file \(data)/fix.jsonl --data \(data) >/dev/null
            tickwire replay --subjects 'MD.>' \(window) --format arrow --as-of \(asOf) --out \(data)/again.arrows
            tickwire replay --subjects 'MD.>' \(window) --format arrow --out \(data)/latest.arrows
            cmp -s \(data)/first.arrows \(data)/again.arrows && echo same-bytes-as-of
            python3 -c 'import pyarrow as pa; r = lambda p: pa.ipc.open_stream(p).read_all(); print(r("\(data)/first.arrows").equals(r("\(data)/latest.arrows")))'
            tickwire export --subjects 'MD.>' \(window) --format parquet --as-of \(asOf) --out \(data)/pq-as-of
            python3 -c 'import glob, json, pyarrow.parquet as pq; f = glob.glob("\(data)/pq-as-of/**/*.parquet", recursive=True)[0]; print(json.loads(pq.read_metadata(f).metadata[b"tickwire"])["tickwire"]["as_of"])'
            """)
        #expect(r.status == 0 && r.stdout == "same-bytes-as-of\nFalse\n\(asOf)\n", "\(r)")

        // Bad input is named.
        r = try Self.sh("tickwire query bars --subjects 'MD.>' --interval 0s \(window)")
        #expect(r.status != 0 && r.stderr.contains("--interval"), "\(r)")
        r = try Self.sh("tickwire replay --subjects 'MD.>' \(window) --format arrow --pace 1x")
        #expect(r.status != 0 && r.stderr.contains("--format arrow"), "\(r)")
        r = try Self.sh("tickwire query asof-join --trades 'MD.>' --quotes 'MD.>' \(window) --format arrow-file")
        #expect(r.status != 0 && r.stderr.contains("--format arrow-file needs --out"), "\(r)")
    }
}
