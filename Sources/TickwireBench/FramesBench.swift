import Foundation
import TickwireBenchSupport
import TickwireCore
import TickwireStore
import CTickwireSys

/// `tickwire-bench frames`: the store's results as DataFrame input, on the synthetic market of `bench store`
/// (Tools/asof_peers.py and Tools/frames_peers.py generate it identically).
///
/// Inside one process: a full replay written as an Arrow IPC stream, beside the same replay written as the binary
/// wire format (the baseline: the cheapest existing output); an as-of join written as Arrow, beside the same join
/// as CSV; a Parquet dataset export. Outputs go to /dev/null. With `--param store=DIR` the sealed store is left
/// there for Tools/frames_peers.py, which times the CLI into polars beside polars reading Parquet.
///
/// Parameters: `n` (trades = quotes = n; else `TICKWIRE_STORE_N`, else `events`), `symbols` (1,000), `store`.
enum FramesBench {
    struct Report: BenchReport {
        var suite = "frames"
        struct Data: Codable, Sendable { var trades: Int, quotes: Int, symbols: Int, generator: String, store: String }
        var data: Data
        var runs: Int
        struct Replay: Codable, Sendable { var events: Int, seconds: Double, eventsPerS: Double, binarySeconds: Double, ratioVsBinary: Double }
        var replayArrow: Replay
        struct Join: Codable, Sendable { var trades: Int, seconds: Double, tradesPerS: Double, csvSeconds: Double, ratioVsCsv: Double }
        var asofJoinArrow: Join
        struct Parquet: Codable, Sendable { var seconds: Double, eventsPerS: Double }
        var parquetExport: Parquet
    }

    static func run(_ options: BenchOptions) throws -> Report {
        let n = Int(options.parameters["n"] ?? ProcessInfo.processInfo.environment["TICKWIRE_STORE_N"] ?? "") ?? options.events
        let symbols = Int(options.parameters["symbols"] ?? "") ?? 1000
        let runs = max(1, options.runs)
        let keep = options.parameters["store"]
        let root = keep ?? options.directory + "/frames-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: root) } }

        let market = SyntheticMarket(symbols: symbols, quotes: n, trades: n)
        let table = SubjectTable()
        let (quoteIDs, tradeIDs) = market.intern(into: table)
        let store = root + "/store"
        let w = try StoreWriter(directory: store, subjects: table)
        try market.generate(quoteIDs: quoteIDs, tradeIDs: tradeIDs) { try w.append($0) }
        try w.seal()
        try w.close()

        let all = try StoreQuery(subjects: SubjectPattern(">"), from: Nanos(SyntheticMarket.t0), to: Nanos(SyntheticMarket.t0 + Nanos.perDay / 2))
        let join = try AsOfJoin(trades: SubjectPattern("MD.SYN.*.TRADE"), quotes: SubjectPattern("MD.SYN.*.QUOTE"), from: all.from, to: all.to)
        func time(_ body: () throws -> Void) rethrows -> Double {
            var best = Double.infinity
            for _ in 0..<runs {
                let t0 = tw_monotonic_ns()
                try body()
                best = min(best, Double(tw_monotonic_ns() - t0) / 1e9)
            }
            return best
        }
        var rows = 0, joined = 0
        let arrowReplay = try time { rows = try Frames.writeArrow(StoreReader(directory: store), all, to: ByteOutput(path: "/dev/null")) }
        let binaryReplay = try time {
            try Replayer.writeBinary(StoreReader(directory: store), all, to: ByteOutput(path: "/dev/null"))
        }
        let arrowJoin = try time {
            joined = try Frames.asOfJoin(StoreReader(directory: store), join) { try ArrowWriter(fields: $0, out: ByteOutput(path: "/dev/null")) }
        }
        let csvJoin = try time { try StoreReader(directory: store).writeAsOfJoin(join, format: .csv, to: ByteOutput(path: "/dev/null")) }
        let parquet = try time {
            try? FileManager.default.removeItem(atPath: root + "/parquet")
            try ParquetExport.write(StoreReader(directory: store), all, toDirectory: root + "/parquet")
        }
        try? FileManager.default.removeItem(atPath: root + "/parquet")
        return Report(
            data: .init(trades: n, quotes: n, symbols: symbols, generator: "SyntheticMarket (BENCHMARKS.md)", store: store),
            runs: runs,
            replayArrow: .init(events: rows, seconds: arrowReplay, eventsPerS: Double(rows) / arrowReplay,
                               binarySeconds: binaryReplay, ratioVsBinary: binaryReplay / arrowReplay),
            asofJoinArrow: .init(trades: joined, seconds: arrowJoin, tradesPerS: Double(joined) / arrowJoin,
                                 csvSeconds: csvJoin, ratioVsCsv: csvJoin / arrowJoin),
            parquetExport: .init(seconds: parquet, eventsPerS: Double(rows) / parquet))
    }
}
