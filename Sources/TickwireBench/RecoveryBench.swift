import CTickwireSys
import Foundation
import TickwireCore
import TickwireDaemon
import TickwireJournal

/// `tickwire-bench recovery`: what a trade service's start costs as the day's journal grows, and what its retry
/// map holds in memory.
///
/// For each journal size (`sizes`, default 100000 and 1000000 trades), in the same run:
/// - **full**: the start as it was — the whole journal read and hashed, every trade decoded into a
///   `[trader, id] → seq` dictionary (the baseline);
/// - **checkpointed**: the start as it is — `Journal(replayFrom:)` from a checkpoint 1,000 trades before the end
///   (older segments left to the background verifier), those trades' keys inserted into a `RetryIndex`;
/// - the anonymous resident memory (RssAnon) each retry map adds once it holds every trade.
/// Journals are written without fsync (the start reads them from the page cache, as after a restart on a
/// running machine); 64 MiB segments as the daemon's.
///
/// `only=index_growth`: the retry index's doubling as the trade service meets it, instead (see `indexGrowth`;
/// parameters `slots`, default 4194304, the trade service's table, and `rate`, inserts a second, default 400000).
enum RecoveryBench {
    static func run(_ options: BenchOptions) throws -> any BenchReport {
        let sizes = (options.parameters["sizes"] ?? "100000,1000000").split(separator: ",").compactMap { Int($0) }
        let root = options.directory + "/recovery-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        if options.parameters["only"] == "index_growth" { return try indexGrowth(options, root: root) }
        var rows: [Result.Size] = []
        for size in sizes {
            let dir = root + "/\(size)"
            try write(dir, trades: size)
            var full: [Double] = [], checkpointed: [Double] = []
            var dictionaryAnon = 0, indexAnon = 0
            for _ in 0..<max(1, options.runs) {
                // The two starts take turns, each on the same files.
                var map: [String: UInt64] = [:]
                let anon0 = rssAnonBytes()
                var t0 = Date()
                var j = try Journal(directory: dir + "/journal", options: JournalOptions(sync: .none)) { r in
                    if let t = TradeWire.decodeRecord(r.payload) { map[t.trader + "\u{0}" + t.clientOrderID] = r.seq }
                }
                full.append(Date().timeIntervalSince(t0))
                dictionaryAnon = max(dictionaryAnon, rssAnonBytes() - anon0)
                j.close()
                map = [:]

                try? FileManager.default.removeItem(atPath: dir + "/retry.idx")
                let index = try RetryIndex(path: dir + "/retry.idx", initialCapacity: 2 * size)
                // Every trade in the index, as a day's trading would have left it, then checkpointed 1,000 back.
                let anon1 = rssAnonBytes()
                try fill(index, dir: dir, upTo: UInt64(size - 1000))
                try index.checkpoint(coveredThrough: UInt64(size - 1000))
                t0 = Date()
                j = try Journal(directory: dir + "/journal", options: JournalOptions(sync: .none), replayFrom: index.coveredThrough + 1) { r in
                    if let t = TradeWire.decodeRecord(r.payload) { _ = try? index.insert(RetryIndex.key(trader: t.trader, clientOrderID: t.clientOrderID), seq: r.seq) }
                }
                checkpointed.append(Date().timeIntervalSince(t0))
                indexAnon = max(indexAnon, rssAnonBytes() - anon1)
                j.close()
                index.close()
            }
            full.sort(); checkpointed.sort()
            rows.append(Result.Size(
                trades: size, fullStartSMedian: full[full.count / 2], checkpointedStartSMedian: checkpointed[checkpointed.count / 2],
                speedupMedian: full[full.count / 2] / max(checkpointed[checkpointed.count / 2], 1e-9),
                dictionaryRssAnonBytes: dictionaryAnon, indexRssAnonBytes: indexAnon))
        }
        return Result(runs: options.runs, sizes: rows)
    }

    struct Result: BenchReport {
        var suite = "recovery"
        var runs: Int
        struct Size: Codable, Sendable {
            var trades: Int
            var fullStartSMedian: Double, checkpointedStartSMedian: Double, speedupMedian: Double
            var dictionaryRssAnonBytes: Int, indexRssAnonBytes: Int
        }
        var sizes: [Size]
        var note = "full: Journal() reading every segment and a dictionary of every retry key (the start before); checkpointed: Journal(replayFrom:) 1,000 trades before the end, the rest of the keys already in a RetryIndex; RssAnon growth of each retry map holding every trade"
    }

    /// A table of `slots` filled to just below half, then `slots`/8 more inserts paced at `rate` a second (the
    /// trade service's pace at most), each timed: the doubling at half made in place (the inserting thread builds
    /// the new table: the baseline, as before) and in the background (it only takes the new table over), taking
    /// turns round by round. The longest insert of the paced part is the pause a trade's acknowledgement meets.
    static func indexGrowth(_ options: BenchOptions, root: String) throws -> IndexGrowth {
        let slots = Int(options.parameters["slots"] ?? "") ?? 1 << 22
        let rate = Int(options.parameters["rate"] ?? "") ?? 400_000
        var key = [UInt8](repeating: 0, count: 32)
        /// "traderT\0ord-N", built in place.
        func insert(_ index: RetryIndex, _ i: Int) throws {
            let text = "trader\(i % 4)\u{0}ord-\(i)"
            let n = text.utf8.count
            _ = key.withUnsafeMutableBytes { b in text.utf8.withContiguousStorageIfAvailable { b.copyMemory(from: UnsafeRawBufferPointer($0)) } }
            try key.withUnsafeBytes { b in _ = try index.insert(UnsafeRawBufferPointer(rebasing: b[0..<n]), seq: UInt64(i + 1)) }
        }
        var r = IndexGrowth(slots: slots, insertsPerS: rate, runs: options.runs)
        for round in 0..<max(1, options.runs) {
            for background in [false, true] {
                let dir = root + "/index-\(round)-\(background)"
                let index = try RetryIndex(path: dir + "/retry.idx", initialCapacity: slots, backgroundGrowthFrom: background ? 0 : Int.max)
                let half = slots / 2 - 1_000
                for i in 0..<half { try insert(index, i) }
                var worst: Int64 = 0
                let interval = 1_000_000_000 / Int64(rate), t0 = tw_monotonic_ns()
                for (k, i) in (half..<(half + slots / 8)).enumerated() {
                    let due = t0 + Int64(k) * interval
                    while tw_monotonic_ns() < due {}
                    let s = tw_monotonic_ns()
                    try insert(index, i)
                    worst = max(worst, tw_monotonic_ns() - s)
                }
                index.finishGrowth()
                guard index.growths == 1 else { throw BenchError.failed("the table doubled \(index.growths) times, not once") }
                let ms = { (x: Int64) in (Double(x) / 1e4).rounded() / 100 }
                if background {
                    r.backgroundLongestInsertMs.append(ms(worst)); r.backgroundDoublingMs.append(ms(index.lastGrowthNanos))
                    r.backgroundTakeOverMs.append(ms(index.lastGrowthPauseNanos))
                } else {
                    r.inPlaceLongestInsertMs.append(ms(worst)); r.inPlaceDoublingMs.append(ms(index.lastGrowthNanos))
                }
                index.close()
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
        return r
    }

    struct IndexGrowth: BenchReport {
        var suite = "recovery"
        var only = "index_growth"
        var slots: Int, insertsPerS: Int, runs: Int
        /// The longest insert of the paced part (ms), and the doubling's time from its start to the new table in
        /// place (ms), round by round.
        var inPlaceLongestInsertMs: [Double] = [], backgroundLongestInsertMs: [Double] = []
        var inPlaceDoublingMs: [Double] = [], backgroundDoublingMs: [Double] = []
        /// Of the background doubling's pause: the take-over (the entries inserted meanwhile placed); the rest of
        /// the longest insert is the start, which writes the table's dirty pages to its file as a checkpoint does.
        var backgroundTakeOverMs: [Double] = []
    }

    /// A journal of `trades` trade records, as the trade service writes them.
    static func write(_ dir: String, trades: Int) throws {
        let j = try Journal(directory: dir + "/journal", options: JournalOptions(sync: .none))
        defer { j.close() }
        for i in 1...trades {
            let t = TradeRequest(trader: "trader\(i % 4)", desk: "DESK\(i % 7)", symbol: ["AAPL", "MSFT", "NVDA"][i % 3],
                                 side: i % 2 == 0 ? .buy : .sell, quantity: Quantity(e8: 100_000_000), price: Price(e8: 18_725_000_000),
                                 clientOrderID: "ord-\(i)")
            _ = try j.append(TradeWire.encodeRecord(t), eventTime: .now())
        }
        try j.waitDurable(UInt64(trades))
    }

    /// Inserts the keys of records 1…`upTo`, read once from the journal.
    static func fill(_ index: RetryIndex, dir: String, upTo: UInt64) throws {
        try JournalAudit.forEach(directory: dir + "/journal") { r in
            guard r.seq <= upTo, let t = TradeWire.decodeRecord(r.payload) else { return }
            _ = try? index.insert(RetryIndex.key(trader: t.trader, clientOrderID: t.clientOrderID), seq: r.seq)
        }
    }

    static func rssAnonBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("RssAnon:") }),
              let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return kb * 1024
    }
}
