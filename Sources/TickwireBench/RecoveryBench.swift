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
enum RecoveryBench {
    static func run(_ options: BenchOptions) throws -> Result {
        let sizes = (options.parameters["sizes"] ?? "100000,1000000").split(separator: ",").compactMap { Int($0) }
        let root = options.directory + "/recovery-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
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
