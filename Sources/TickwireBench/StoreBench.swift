import Foundation
import TickwireCore
import TickwireBenchSupport
import TickwireStore
import TickwireFeeds
import CTickwireSys

/// `tickwire-bench store`: ingest, seal, scan, as-known-at reads and as-of joins on the synthetic market that
/// Tools/asof_peers.py generates identically for polars, DuckDB and pandas.
///
/// Size: parameter `n` (trades = quotes = n), else the environment's `TICKWIRE_STORE_N`, else `events`;
/// parameter `symbols` (default 1,000); `only=csv_import` runs the CSV import against polars alone. Baselines in the same run: a raw `write` of the same 64-byte events
/// (ingest), a sum over the same events in an in-memory array (scan), the plain read (as-known-at).
enum StoreBench {
    static func run(_ options: BenchOptions) throws -> any BenchReport {
        let n = Int(options.parameters["n"] ?? ProcessInfo.processInfo.environment["TICKWIRE_STORE_N"] ?? "") ?? options.events
        let symbols = Int(options.parameters["symbols"] ?? "") ?? 1000
        let runs = max(1, options.runs)
        let root = options.directory + "/store-bench-\(getpid())"
        if options.parameters["only"] == "csv_import" {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: root) }
            return try csvImportOnly(options, n: n, symbols: symbols, runs: runs, root: root)
        }
        let market = SyntheticMarket(symbols: symbols, quotes: n, trades: n)
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }

        let table = SubjectTable()
        let (quoteIDs, tradeIDs) = market.intern(into: table)
        var events = [Event]()
        events.reserveCapacity(2 * n)
        market.generate(quoteIDs: quoteIDs, tradeIDs: tradeIDs) { events.append($0) }

        // Ingest: StoreWriter (partitioning, staging, CRC, writev) against a raw write of the same bytes.
        var ingest = [Double](), durable = [Double](), raw = [Double](), seal = [Double]()
        let store = root + "/plain"
        for _ in 0..<runs {
            try? FileManager.default.removeItem(atPath: store)
            raw.append(try rawWrite(events, path: root + "/raw.bin"))
            let w = try StoreWriter(directory: store, subjects: table)
            let t0 = tw_monotonic_ns()
            try events.withUnsafeBufferPointer { try w.append(contentsOf: $0) }
            ingest.append(Double(tw_monotonic_ns() - t0) / 1e9)      // every full block written (page cache)
            try w.flush()
            durable.append(Double(tw_monotonic_ns() - t0) / 1e9)     // and forced to the device
            let s0 = tw_monotonic_ns()
            try w.seal()
            seal.append(Double(tw_monotonic_ns() - s0) / 1e9)
            try w.close()
        }
        try? FileManager.default.removeItem(atPath: root + "/raw.bin")

        // Scan: every event of the sealed store through the batch API (all columns, then only `a` and the times),
        // against a sum over the in-memory array.
        let reader = try StoreReader(directory: store)
        let all = try StoreQuery(subjects: SubjectPattern(">"), from: Nanos(SyntheticMarket.t0), to: Nanos(SyntheticMarket.t0 + Nanos.perDay / 2))
        var scan = [Double](), arrayScan = [Double](), projected = [Double](), scanned = 0, checksum: Int64 = 0
        for _ in 0..<runs {
            let t0 = tw_monotonic_ns()
            var seen = 0, sum: Int64 = 0
            try reader.scan(all) { batch in
                let rows = batch.rows
                for i in 0..<batch.count { sum &+= rows.a[i] &+ rows.knownTime[i] }
                seen += batch.count
            }
            scan.append(Double(tw_monotonic_ns() - t0) / 1e9)
            scanned = seen; checksum = sum
            let a0 = tw_monotonic_ns()
            var s2: Int64 = 0
            events.withUnsafeBufferPointer { for e in $0 { s2 &+= e.a &+ e.knownTime.rawValue } }
            arrayScan.append(Double(tw_monotonic_ns() - a0) / 1e9)
            precondition(s2 == sum, "scan checksum differs from the array's")
            let p0 = tw_monotonic_ns()
            var s3: Int64 = 0
            try reader.scan(all, columns: [.a]) { batch in
                let rows = batch.rows
                for i in 0..<batch.count { s3 &+= rows.a[i] &+ rows.knownTime[i] }
            }
            projected.append(Double(tw_monotonic_ns() - p0) / 1e9)
            precondition(s3 == sum, "projected scan checksum differs")
        }

        // Replay (k-way merge into global time order), once.
        let r0 = tw_monotonic_ns()
        var replayed = 0
        try reader.replay(all) { _ in replayed += 1 }
        let replaySeconds = Double(tw_monotonic_ns() - r0) / 1e9

        // As-of join, backward, every trade.
        let join = try AsOfJoin(trades: SubjectPattern("MD.SYN.*.TRADE"), quotes: SubjectPattern("MD.SYN.*.QUOTE"),
                                from: all.from, to: all.to)
        var joinTimes = [Double](), joined = 0, matched = 0
        for _ in 0..<runs {
            let t0 = tw_monotonic_ns()
            var rows = 0, hits = 0
            try reader.asOfJoin(join) { batch in
                rows += batch.count
                for i in 0..<batch.count where batch.match[i] >= 0 { hits += 1 }
            }
            joinTimes.append(Double(tw_monotonic_ns() - t0) / 1e9)
            joined = rows; matched = hits
        }

        // Bytes per quote: a store of the quotes alone.
        let quoteStore = root + "/quotes"
        let qw = try StoreWriter(directory: quoteStore, subjects: table)
        for e in events where e.kind == .quote { try qw.append(e) }
        try qw.seal()
        try qw.close()
        let quoteBytes = directoryBytes(quoteStore)

        // As known at K with 1% of events corrected (every 50th trade re-sent half a session later, one tick up),
        // against the plain (as known now) read of the same store.
        let corrected = root + "/corrected"
        let cw = try StoreWriter(directory: corrected, subjects: table)
        let half = Int64(n / symbols) * SyntheticMarket.step / 2
        var maxKnown: Int64 = 0
        for e in events {
            try cw.append(e)
            maxKnown = max(maxKnown, e.knownTime.rawValue)
        }
        var corrections = 0
        for e in events where e.kind == .trade && e.c % 50 == 0 {
            var c = e
            c.knownTime = Nanos(e.knownTime.rawValue + half)
            c.a += SyntheticMarket.tick
            try cw.append(c)
            corrections += 1
        }
        try cw.seal()
        try cw.close()
        let creader = try StoreReader(directory: corrected)
        var plainRead = [Double](), asOfRead = [Double](), plainRows = 0, asOfRows = 0
        var asOfQuery = all
        asOfQuery.asOf = Nanos(maxKnown)
        for _ in 0..<runs {
            for (q, isAsOf) in [(all, false), (asOfQuery, true)] {
                let t0 = tw_monotonic_ns()
                var rows = 0, sum: Int64 = 0
                try creader.scan(q) { batch in
                    for i in 0..<batch.count { sum &+= batch.rows.a[i] }
                    rows += batch.count
                }
                let dt = Double(tw_monotonic_ns() - t0) / 1e9
                if isAsOf { asOfRead.append(dt); asOfRows = rows } else { plainRead.append(dt); plainRows = rows }
                _ = sum
            }
        }

        let correctionCost = try CorrectionBench.measure(store: store, query: all, runs: runs)
        let events2 = Double(2 * n)
        return Result(
            data: .init(trades: n, quotes: n, symbols: symbols, generator: "SyntheticMarket (BENCHMARKS.md)"),
            runs: runs,
            ingest: .init(eventsPerS: events2 / best(ingest), seconds: best(ingest),
                          durableEventsPerS: events2 / best(durable),
                          rawWriteFdatasyncEventsPerS: events2 / best(raw),
                          durableRatioVsRawWrite: best(raw) / best(durable)),
            seal: .init(seconds: best(seal), eventsPerS: events2 / best(seal)),
            scan: .init(events: scanned, eventsPerS: Double(scanned) / best(scan),
                        arrayEventsPerS: events2 / best(arrayScan), ratioVsArray: best(arrayScan) / best(scan),
                        projectedEventsPerS: Double(scanned) / best(projected),
                        projectedRatioVsArray: best(arrayScan) / best(projected),
                        checksum: checksum),
            replay: .init(events: replayed, eventsPerS: Double(replayed) / replaySeconds),
            asofJoin: .init(trades: joined, matched: matched, tradesPerS: Double(joined) / best(joinTimes),
                            seconds: best(joinTimes)),
            bytesPerQuote: Double(quoteBytes) / Double(n),
            asKnownAt: .init(corrections: corrections, plainRows: plainRows, asOfRows: asOfRows,
                             plainSeconds: best(plainRead), asOfSeconds: best(asOfRead),
                             ratioVsPlain: best(asOfRead) / best(plainRead)),
            corrections: correctionCost,
            intraday: try intraday(events, table: table, market: market, sealed: store, root: root, runs: runs),
            csvImport: try csvImport(events, table: table, root: root, runs: runs))
    }

    /// CSV import against polars `read_csv` of the same file, run from Tools/csv_peer.py in interleaved rounds
    /// (each round: polars once, the parse once, the import once): the trades written as a tardis trades CSV;
    /// timed are the parse alone (into a counting sink), the whole import as `tickwire import` does it (the
    /// file's identity, then `StoreImporter`: parse, stage, seal, publish, each piece forced to the device), and
    /// polars. Ratios are polars' time ÷ ours per round; the median of them is the figure to quote.
    struct CSVImport: Codable, Sendable {
        var rows: Int, bytes: Int, parseSeconds: Double, importSeconds: Double, parseRowsPerS: Double
        var polarsSeconds: Double?, polarsNote: String?
        var ratioParseVsPolars: Double?, ratioImportVsPolars: Double?
        /// Per round, in round order.
        var roundsParseSeconds: [Double], roundsImportSeconds: [Double], roundsPolarsSeconds: [Double]
        var roundsRatioImportVsPolars: [Double]
    }

    /// `--param only=csv_import`: the CSV import alone.
    struct CSVImportOnly: BenchReport {
        var suite = "store"
        var only = "csv_import"
        var data: Result.Data
        var runs: Int
        var csvImport: CSVImport
    }

    static func csvImportOnly(_ options: BenchOptions, n: Int, symbols: Int, runs: Int, root: String) throws -> CSVImportOnly {
        let market = SyntheticMarket(symbols: symbols, quotes: 0, trades: n)
        let table = SubjectTable()
        let (quoteIDs, tradeIDs) = market.intern(into: table)
        var events = [Event]()
        events.reserveCapacity(n)
        market.generate(quoteIDs: quoteIDs, tradeIDs: tradeIDs) { events.append($0) }
        return CSVImportOnly(data: .init(trades: n, quotes: 0, symbols: symbols, generator: "SyntheticMarket (BENCHMARKS.md)"),
                             runs: runs, csvImport: try csvImport(events, table: table, root: root, runs: runs))
    }

    static func csvImport(_ events: [Event], table: SubjectTable, root: String, runs: Int) throws -> CSVImport {
        let path = root + "/trades.csv"
        var text = [UInt8]()
        text.reserveCapacity(events.count * 48)
        text.append(contentsOf: "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n".utf8)
        var rows = 0
        for e in events where e.kind == .trade {
            let symbol = table.text(e.subjectID).split(separator: ".")[2]
            text.append(contentsOf: "binance-futures,\(symbol),\(e.eventTime.rawValue / 1000),\(e.knownTime.rawValue / 1000),\(e.c),".utf8)
            text.append(contentsOf: (e.flags == Side.sell.rawValue ? "sell," : "buy,").utf8)
            FixedPoint.appendDecimal(e8: e.a, to: &text); text.append(UInt8(ascii: ","))
            FixedPoint.appendDecimal(e8: e.b, to: &text); text.append(UInt8(ascii: "\n"))
            rows += 1
        }
        try Data(text).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let script = FileManager.default.currentDirectoryPath + "/Tools/csv_peer.py"
        var polarsNote: String?
        if !FileManager.default.fileExists(atPath: script) {
            polarsNote = "not run: \(script) not found (run from the repository's root)"
        }
        var parse = [Double](), whole = [Double](), polars = [Double]()
        // One round of each first, not counted: the file was just written (its pages are still being written
        // back, and the first reader of either kind met that).
        if polarsNote == nil { _ = try? polarsReadCSV(script: script, path: path, rows: rows) }
        try StoreImporter.importEvents(from: TardisCSVSource(path: path, kind: .trades), directory: root + "/csv-import-warm-up",
                                       identity: try StoreImporter.Identity(kind: "tardis-trades", path: path))
        try? FileManager.default.removeItem(atPath: root + "/csv-import-warm-up")
        for r in 0..<runs {
            if polarsNote == nil {
                do { polars.append(try polarsReadCSV(script: script, path: path, rows: rows)) } catch {
                    polarsNote = "not run: \(error)"
                }
            }
            let source = TardisCSVSource(path: path, kind: .trades)
            let sink = CountingSink()
            let t0 = tw_monotonic_ns()
            try source.run(into: sink, stop: StopSignal())
            parse.append(Double(tw_monotonic_ns() - t0) / 1e9)
            precondition(sink.count == rows, "the CSV read back \(sink.count) of \(rows) rows")
            let store = root + "/csv-import-\(r)"
            let i0 = tw_monotonic_ns()
            let identity = try StoreImporter.Identity(kind: "tardis-trades", path: path)
            let report = try StoreImporter.importEvents(from: TardisCSVSource(path: path, kind: .trades), directory: store,
                                                        identity: identity)
            whole.append(Double(tw_monotonic_ns() - i0) / 1e9)
            precondition(report.events == UInt64(rows), "the import stored \(report.events) of \(rows) rows")
            try? FileManager.default.removeItem(atPath: store)
        }
        func median(_ xs: [Double]) -> Double { xs.isEmpty ? .nan : xs.sorted()[xs.count / 2] }
        var out = CSVImport(rows: rows, bytes: text.count, parseSeconds: median(parse), importSeconds: median(whole),
                            parseRowsPerS: Double(rows) / median(parse), polarsNote: polarsNote,
                            roundsParseSeconds: parse, roundsImportSeconds: whole, roundsPolarsSeconds: polars,
                            roundsRatioImportVsPolars: [])
        if polars.count == runs {
            out.polarsSeconds = median(polars)
            out.ratioParseVsPolars = medianRatio(polars, parse)
            out.roundsRatioImportVsPolars = zip(polars, whole).map { ($0 / $1 * 100).rounded() / 100 }
            out.ratioImportVsPolars = medianRatio(polars, whole)
        }
        return out
    }

    /// One `pl.read_csv` of `path` by Tools/csv_peer.py, in seconds (its own timing: not the interpreter's start).
    static func polarsReadCSV(script: String, path: String, rows: Int) throws -> Double {
        let peer = Process()
        peer.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        peer.arguments = ["python3", script, path, "1"]
        let pipe = Pipe()
        peer.standardOutput = pipe
        try peer.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        peer.waitUntilExit()
        guard peer.terminationStatus == 0,
              let polars = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let seconds = polars["seconds"] as? Double, polars["rows"] as? Int == rows else {
            throw BenchError.failed("csv_peer.py failed (exit \(peer.terminationStatus); pip install polars)")
        }
        return seconds
    }

    /// Today as the daemon stores it — logs rolled every `Daemon`-sized chunk and sealed by a `StoreSealer`
    /// thread while the writer appends, the last chunk's worth still a log — against the same events sealed:
    /// a one-symbol, one-second query from a fresh reader each time (what `tickwire replay` does), and the bytes
    /// each store takes. The tail left in a log is the worst case, one event short of a chunk.
    struct Intraday: Codable, Sendable {
        var chunkEvents: Int, chunks: Int, tailEvents: Int, appendSeconds: Double, sealedWhileAppendingSeconds: Double
        struct Read: Codable, Sendable {
            var subject: String, rows: Int, sealedSeconds: Double, intradaySeconds: Double, ratioIntradayVsSealed: Double
        }
        var oneSymbolSecond: Read, lastSecondFromTail: Read
        var bytesPerEventIntraday: Double
    }

    static func intraday(_ events: [Event], table: SubjectTable, market: SyntheticMarket, sealed: String, root: String,
                         runs: Int, chunkEvents: Int = 1 << 18) throws -> Intraday {
        let dir = root + "/intraday"
        let sealer = StoreSealer(directory: dir)
        sealer.start()
        let w = try StoreWriter(directory: dir, subjects: table, chunkEvents: chunkEvents, sealer: sealer)
        let tail = events.count >= chunkEvents ? chunkEvents - 1 : 0
        let chunked = (events.count - tail) / chunkEvents * chunkEvents
        let w0 = tw_monotonic_ns()
        try events[..<(chunked + tail)].withUnsafeBufferPointer { try w.append(contentsOf: $0) }
        try w.flush()
        let appendSeconds = Double(tw_monotonic_ns() - w0) / 1e9
        sealer.drain()
        let drainedSeconds = Double(tw_monotonic_ns() - w0) / 1e9
        let subject = "MD.SYN.\(market.symbolName(market.symbols / 2)).QUOTE"
        let mid = Nanos(SyntheticMarket.t0 + Int64(market.quotes / market.symbols / 2) * SyntheticMarket.step)
        let q = try StoreQuery(subjects: SubjectPattern(subject), from: mid, to: Nanos(mid.rawValue + Nanos.perSecond))
        var lateQ = q   // the last second written: read from the tail
        let last = events[chunked + tail - 1].eventTime.rawValue
        lateQ.from = Nanos(last - Nanos.perSecond); lateQ.to = Nanos(last + 1)
        func time(_ store: String, _ q: StoreQuery) throws -> (Double, Int) {
            var best = Double.infinity, rows = 0
            for _ in 0..<max(runs, 3) {
                let t0 = tw_monotonic_ns()
                let reader = try StoreReader(directory: store)
                rows = 0
                try reader.replay(q) { _ in rows += 1 }
                best = min(best, Double(tw_monotonic_ns() - t0) / 1e9)
            }
            return (best, rows)
        }
        let (sealedMid, sealedRows) = try time(sealed, q)
        let (openMid, openRows) = try time(dir, q)
        let (sealedLate, sealedLateRows) = try time(sealed, lateQ)
        let (openLate, openLateRows) = try time(dir, lateQ)
        precondition(sealedRows == openRows, "intraday and sealed reads differ")
        let chunks = Layout.chunkCount(dir)
        let intradayBytes = directoryBytes(dir)
        try w.close()
        sealer.finish()
        return Intraday(
            chunkEvents: chunkEvents, chunks: chunks, tailEvents: tail,
            appendSeconds: appendSeconds, sealedWhileAppendingSeconds: drainedSeconds,
            oneSymbolSecond: .init(subject: subject, rows: sealedRows, sealedSeconds: sealedMid,
                                   intradaySeconds: openMid, ratioIntradayVsSealed: openMid / sealedMid),
            lastSecondFromTail: .init(subject: subject, rows: openLateRows, sealedSeconds: sealedLate,
                                      intradaySeconds: openLate, ratioIntradayVsSealed: openLate / sealedLate),
            bytesPerEventIntraday: Double(intradayBytes) / Double(chunked + tail))
    }

    static func best(_ xs: [Double]) -> Double { xs.min() ?? .nan }

    /// The baseline writer: the same 64-byte events straight to a file with `write`, 4,096 at a time, then fsync.
    static func rawWrite(_ events: [Event], path: String) throws -> Double {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BenchError.failed("open \(path): errno \(errno)") }
        defer { close(fd); unlink(path) }
        let t0 = tw_monotonic_ns()
        events.withUnsafeBytes { p in
            var o = 0
            while o < p.count {
                let n = write(fd, p.baseAddress! + o, min(4096 * 64, p.count - o))
                if n <= 0 { break }
                o += n
            }
        }
        fdatasync(fd)
        return Double(tw_monotonic_ns() - t0) / 1e9
    }

    static func directoryBytes(_ path: String) -> Int {
        guard let e = FileManager.default.enumerator(atPath: path) else { return 0 }
        var total = 0
        while let name = e.nextObject() as? String {
            if let a = try? FileManager.default.attributesOfItem(atPath: path + "/" + name), (a[.type] as? FileAttributeType) == .typeRegular {
                total += (a[.size] as? Int) ?? 0
            }
        }
        return total
    }
}

extension StoreBench {
    struct Result: BenchReport {
        var suite = "store"
        struct Data: Codable, Sendable { var trades: Int, quotes: Int, symbols: Int, generator: String }
        var data: Data
        var runs: Int
        struct Ingest: Codable, Sendable {
            var eventsPerS: Double, seconds: Double, durableEventsPerS: Double, rawWriteFdatasyncEventsPerS: Double
            var durableRatioVsRawWrite: Double
        }
        var ingest: Ingest
        struct Seal: Codable, Sendable { var seconds: Double, eventsPerS: Double }
        var seal: Seal
        struct Scan: Codable, Sendable {
            var events: Int, eventsPerS: Double, arrayEventsPerS: Double, ratioVsArray: Double
            var projectedEventsPerS: Double, projectedRatioVsArray: Double, checksum: Int64
        }
        var scan: Scan
        struct Replay: Codable, Sendable { var events: Int, eventsPerS: Double }
        var replay: Replay
        struct AsOfJoin: Codable, Sendable { var trades: Int, matched: Int, tradesPerS: Double, seconds: Double }
        var asofJoin: AsOfJoin
        var bytesPerQuote: Double
        struct KnownAt: Codable, Sendable {
            var corrections: Int, plainRows: Int, asOfRows: Int, plainSeconds: Double, asOfSeconds: Double, ratioVsPlain: Double
        }
        var asKnownAt: KnownAt
        var corrections: CorrectionBench.Cost
        var intraday: Intraday
        var csvImport: CSVImport
    }
}
