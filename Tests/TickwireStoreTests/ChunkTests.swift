import Foundation
import Testing
import TickwireCore
import TickwireTestSupport
@testable import TickwireStore

/// Sealing while running: logs rolled into sealed chunks read exactly as one sealed segment of the same events
/// (rows, order, versions as known at any moment), whatever a crash leaves mid-seal.
@Suite(.timeLimit(.minutes(5))) struct ChunkTests {
    let ev = Events()
    let symbols = ["AAA", "BBB", "CCC", "DDD"]

    /// A seeded mix over two days: quotes and trades in time order with equal times, late events, corrections
    /// (a later-known trade with the same id and event time) and busts.
    func market(_ n: Int, seed: UInt64) -> [Event] {
        var rng = SplitMix(seed: seed)
        var out = [Event](), trades = [(String, Nanos, UInt64)]()
        var clock = 0.0
        for i in 0..<n {
            clock += Double(rng.next(below: 3)) * 0.001                  // equal times are common
            let day = i > n * 3 / 4 ? 86_400.0 : 0
            let sym = symbols[Int(rng.next(below: UInt64(symbols.count)))]
            var at = t(clock + day)
            if rng.next(below: 50) == 0 { at = t(clock + day - Double(rng.next(below: 30))) } // late
            let known = t(clock + day + 0.0005)
            switch rng.next(below: 20) {
            case 0..<12:
                out.append(ev.quote("MD.XNAS.\(sym).QUOTE", at: at, known: known, bid: 100 + Int64(rng.next(below: 5)), ask: 106))
            case 12..<18:
                let id = 1 + rng.next(below: 40)   // ids repeat: different event times are different trades
                out.append(ev.trade("MD.XNAS.\(sym).TRADE", at: at, known: known, price: 100 + Int64(rng.next(below: 9)), id: id))
                trades.append(("MD.XNAS.\(sym).TRADE", at, id))
            case 18:
                guard let (s, at, id) = trades.randomElement(using: &rng) else { continue }
                out.append(ev.trade(s, at: at, known: known, price: 200 + Int64(rng.next(below: 9)), id: id)) // correction
            default:
                guard let (s, at, id) = trades.randomElement(using: &rng) else { continue }
                out.append(ev.bust(String(Layout.stem(s)) + ".BUST", at: at, known: known, id: id))
            }
        }
        return out
    }

    func write(_ events: [Event], to dir: String, chunkEvents: Int?, blockEvents: Int = 64, seal: Bool) throws {
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: blockEvents, chunkEvents: chunkEvents)
        for e in events { try w.append(e) }
        try w.flush()
        if seal { try w.seal() }
        try w.close()
    }

    /// Every pattern and moment the comparison reads at.
    func views(_ dir: String) throws -> [[String]] {
        var out = [[String]]()
        for pattern in [">", "MD.XNAS.AAA.TRADE", "MD.XNAS.BBB.>", "MD.XNAS.*.QUOTE"] {
            for asOf in [nil, t(5), t(20), t(86_410)] {
                out.append(digest(try read(dir, pattern, from: t(-3600), to: t(200_000), asOf: asOf)))
            }
        }
        return out
    }

    /// Equal views, or the first difference recorded.
    func same(_ a: [[String]], _ b: [[String]]) -> Bool {
        for (i, (x, y)) in zip(a, b).enumerated() where x != y {
            let k = (0..<min(x.count, y.count)).first { x[$0] != y[$0] } ?? min(x.count, y.count)
            Issue.record("view \(i) differs at row \(k) of \(x.count)/\(y.count): \(k < x.count ? x[k] : "-") vs \(k < y.count ? y[k] : "-")")
            return false
        }
        return a.count == b.count
    }

    @Test func chunksAndATailReadExactlyAsOneSealedSegment() throws {
        let seed = testSeed()
        let events = market(6000, seed: seed)
        let reference = scratchDirectory(); defer { cleanUp(reference) }
        try write(events, to: reference, chunkEvents: nil, seal: true)
        let expected = try views(reference)
        #expect(expected[0].count > 4000, "seed \(seed)")

        // Chunks of 500 events (logs of 64-event blocks), the last few hundred still in a log.
        let chunked = scratchDirectory(); defer { cleanUp(chunked) }
        try write(events, to: chunked, chunkEvents: 500, seal: false)
        let part = chunked + "/2026-01-05/MD.XNAS"
        #expect(Layout.inspect(part).liveChunks.count >= 8, "seed \(seed)")
        #expect(Layout.inspect(part).liveLogs.count == 1, "seed \(seed)")
        #expect(try same(views(chunked), expected), "seed \(seed)")

        // Sealed whole: the same again, one segment.
        try write([], to: chunked, chunkEvents: 500, seal: true)
        #expect(Layout.inspect(part).liveChunks.isEmpty && Layout.inspect(part).liveLogs.isEmpty)
        #expect(try views(chunked) == expected, "seed \(seed)")
    }

    @Test func aDateOverTheMergeBoundStaysInChunksAndReadsTheSame() throws {
        let seed = testSeed()
        let events = market(3000, seed: seed)
        let reference = scratchDirectory(); defer { cleanUp(reference) }
        try write(events, to: reference, chunkEvents: nil, seal: true)
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 64, chunkEvents: 400, compactRows: 1000)
        for e in events { try w.append(e) }
        try w.seal()
        try w.close()
        let files = Layout.inspect(dir + "/2026-01-05/MD.XNAS")
        #expect(files.liveLogs.isEmpty && files.sealedGeneration == nil && files.liveChunks.count > 2, "seed \(seed)")
        #expect(try views(dir) == views(reference), "seed \(seed)")
    }

    /// The daemon's arrangement: the writer rolls logs, a sealer thread seals them as they close, and a reader
    /// between appends always answers exactly what was flushed.
    @Test func aSealerThreadSealsClosedLogsWhileTheWriterWrites() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let sealer = StoreSealer(directory: dir)
        sealer.start()
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 50, chunkEvents: 1000, sealer: sealer)
        var written = [Event]()
        for i in 0..<20_000 {
            let e = ev.quote("MD.XNAS.\(symbols[i % 4]).QUOTE", at: t(Double(i) * 0.01), known: t(Double(i) * 0.01), bid: Int64(i), ask: Int64(i) + 1)
            try w.append(e)
            written.append(e)
            if i % 2500 == 2499 {
                try w.flush()
                let got = try read(dir, "MD.XNAS.BBB.QUOTE")
                #expect(got.map(\.event.a) == written.filter { ev.table.text($0.subjectID) == "MD.XNAS.BBB.QUOTE" }.map(\.a))
            }
        }
        try w.flush()
        sealer.drain()
        let part = dir + "/2026-01-05/MD.XNAS"
        // Merged with the segment every 8 chunks: few pieces for a read of today.
        #expect(Layout.inspect(part).sealedGeneration != nil && Layout.inspect(part).liveChunks.count < 8)
        try w.handOverAll(before: t(86_400 * 2))
        try w.close()
        sealer.finish()
        let files = Layout.inspect(part)
        #expect(files.sealedGeneration != nil && files.liveChunks.isEmpty && files.liveLogs.isEmpty)
        #expect(try read(dir).count == 20_000)
        #expect(sealer.sealed.failures == 0)
    }

    /// Every state a crash can leave while a chunk is sealed: the store opens and answers exactly, for a reader
    /// at once and after a writer has cleaned up.
    @Test func aCrashAtEveryStepOfAChunkSealLeavesAnExactStore() throws {
        let events = (0..<900).map { i in
            ev.quote("MD.XNAS.\(symbols[i % 4]).QUOTE", at: t(Double(i)), known: t(Double(i)), bid: Int64(i), ask: Int64(i) + 1)
        }
        let reference = scratchDirectory(); defer { cleanUp(reference) }
        try write(events, to: reference, chunkEvents: nil, seal: true)
        let expected = try views(reference)
        // The logs as a writer leaves them: three closed logs of 300 events, none sealed yet.
        let base = scratchDirectory(); defer { cleanUp(base) }
        let sealer = StoreSealer(directory: base) // not started: its requests stay queued, nothing is sealed
        let w = try StoreWriter(directory: base, subjects: ev.table, blockEvents: 100, chunkEvents: 300, sealer: sealer)
        for e in events { try w.append(e) }
        try w.close()
        let part = "/2026-01-05/MD.XNAS"
        #expect(Layout.inspect(base + part).liveLogs == [1, 2, 3])
        // The files a finished seal of log 2 writes, to cut short at each step.
        let done = scratchDirectory(); defer { cleanUp(done) }
        try FileManager.default.copyItem(atPath: base + "/2026-01-05", toPath: done + "/2026-01-05")
        try Sealing.sealChunk(store: done, key: PartitionKey(day: Layout.day(of: t(0).rawValue), root: "MD.XNAS"),
                              generation: 2, report: { _ in })
        let chunk = done + part + "/" + Layout.chunkName(2)
        let chunkFiles = FS.list(chunk).sorted()
        #expect(chunkFiles.count == 11)
        var states = [(String, (String) throws -> Void)]()
        for k in 0...chunkFiles.count {
            for torn in [false, true] where !(torn && k == chunkFiles.count) {
                states.append(("\(k) files written\(torn ? " and one torn" : "") in the temporary", { p in
                    let tmp = p + "/" + Layout.chunkName(2) + ".tmp"
                    try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
                    for name in chunkFiles.prefix(k) { try FileManager.default.copyItem(atPath: chunk + "/" + name, toPath: tmp + "/" + name) }
                    if torn {
                        let bytes = try Data(contentsOf: URL(fileURLWithPath: chunk + "/" + chunkFiles[k]))
                        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: tmp + "/" + chunkFiles[k]))
                    }
                }))
            }
        }
        states.append(("renamed, the log not yet removed", { p in
            try FileManager.default.copyItem(atPath: chunk, toPath: p + "/" + Layout.chunkName(2))
        }))
        states.append(("renamed and the log removed", { p in
            try FileManager.default.copyItem(atPath: chunk, toPath: p + "/" + Layout.chunkName(2))
            try FileManager.default.removeItem(atPath: p + "/" + Layout.logName(2))
        }))
        for (what, make) in states {
            let dir = scratchDirectory(); defer { cleanUp(dir) }
            try FileManager.default.copyItem(atPath: base + "/2026-01-05", toPath: dir + "/2026-01-05")
            try make(dir + part)
            #expect(try views(dir) == expected, "a reader, after a crash with \(what)")
            let sealer = StoreSealer(directory: dir)
            sealer.start()
            let w = try StoreWriter(directory: dir, subjects: ev.table, chunkEvents: 300, sealer: sealer)
            try w.append(ev.quote("MD.XNAS.AAA.QUOTE", at: t(5000), known: t(5000), bid: 1, ask: 2))
            try w.handOverAll(before: t(0))
            try w.close()
            sealer.finish()
            #expect(Layout.inspect(dir + part).temporaries.isEmpty, "\(what)")
            #expect(Layout.inspect(dir + part).liveLogs.isEmpty, "\(what)")
            #expect(try read(dir).count == 901, "after sealing again, a crash with \(what)")
        }
    }

    /// A child process writes with a sealer thread and small chunks and is killed with SIGKILL at a random
    /// moment; the store then reads back exactly a prefix of what was written (no event twice, none skipped
    /// before the last one read), and a writer seals it whole.
    @Test func aWriterAndSealerKilledAtRandomLeaveAnExactStore() async throws {
        let dir = "/tmp/tickwire-store-tests/chunk-sigkill-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        await #expect(processExitsWith: .signal(SIGKILL)) {
            let dir = "/tmp/tickwire-store-tests/chunk-sigkill-\(getppid())"
            let table = SubjectTable()
            let id = table.intern(text: "MD.XNAS.AAPL.QUOTE")
            let sealer = StoreSealer(directory: dir)
            sealer.start()
            let w = try! StoreWriter(directory: dir, subjects: table, blockEvents: 256, chunkEvents: 4096, sealer: sealer)
            let killer = Thread {
                usleep(UInt32.random(in: 200_000...900_000))
                kill(getpid(), SIGKILL)
            }
            killer.start()
            for i in 0..<100_000_000 {
                let at = Nanos(sessionOpen.rawValue + Int64(i) * 1_000)
                try! w.append(.quote(id, bid: Price(e8: Int64(i)), bidSize: Quantity(e8: 1), ask: Price(e8: Int64(i) + 1), askSize: Quantity(e8: 1), eventTime: at, knownTime: at))
                if i % 20_000 == 0 { try! w.flush() }
            }
        }
        defer { cleanUp(dir) }
        let got = try read(dir, from: sessionOpen, to: Nanos(sessionOpen.rawValue + Nanos.perDay / 2)).map(\.event.a)
        #expect(got == Array(0..<Int64(got.count)))
        let w = try StoreWriter(directory: dir, subjects: SubjectTable())
        try w.seal()
        try w.close()
        #expect(try read(dir, from: sessionOpen, to: Nanos(sessionOpen.rawValue + Nanos.perDay / 2)).map(\.event.a) == got)
        let files = Layout.inspect(dir + "/2026-01-05/MD.XNAS")
        #expect(files.liveLogs.isEmpty && files.temporaries.isEmpty)
    }

    /// Pieces that meet at one event time are read one after the other, with no subject rebuilt in memory, when
    /// the later piece's rows at that time are known no earlier and correct no trade of the earlier one; a row
    /// known earlier, or a correction across the meeting, is merged. Each reads as the day sealed whole.
    @Test(arguments: [("in order", false), ("known earlier", true), ("a correction across", true)])
    func piecesMeetingAtOneTimeAreMergedOnlyWhenTheyMustBe(_ meeting: (String, Bool)) throws {
        // Two chunks of six events and a tail; AAA's quotes and trades meet at t(2) between the chunks.
        let aaa = "MD.XNAS.AAA.TRADE", quote = "MD.XNAS.AAA.QUOTE", bbb = "MD.XNAS.BBB.QUOTE"
        let known = meeting.0 == "known earlier" ? t(2.0005) : t(2.002)
        let events = [
            ev.quote(quote, at: t(1), known: t(1.001), bid: 100, ask: 106), ev.trade(aaa, at: t(1), known: t(1.001), price: 100, id: 4),
            ev.quote(quote, at: t(2), known: t(2.001), bid: 100, ask: 106), ev.trade(aaa, at: t(2), known: t(2.001), price: 101, id: 5),
            ev.quote(bbb, at: t(1.5), known: t(1.501), bid: 7, ask: 8), ev.quote(bbb, at: t(1.6), known: t(1.601), bid: 7, ask: 8),
            ev.quote(quote, at: t(2), known: known, bid: 101, ask: 106),
            ev.trade(aaa, at: t(2), known: known, price: 102, id: meeting.0 == "a correction across" ? 5 : 6),
            ev.quote(quote, at: t(3), known: t(3.001), bid: 102, ask: 106), ev.trade(aaa, at: t(3), known: t(3.001), price: 103, id: 7),
            ev.quote(bbb, at: t(3.5), known: t(3.501), bid: 7, ask: 8), ev.quote(bbb, at: t(3.6), known: t(3.601), bid: 7, ask: 8),
            ev.quote(bbb, at: t(4), known: t(4.001), bid: 7, ask: 8),
        ]
        let reference = scratchDirectory(); defer { cleanUp(reference) }
        try write(events, to: reference, chunkEvents: nil, seal: true)
        let chunked = scratchDirectory(); defer { cleanUp(chunked) }
        try write(events, to: chunked, chunkEvents: 6, blockEvents: 6, seal: false)
        let part = chunked + "/2026-01-05/MD.XNAS"
        #expect(Layout.inspect(part).liveChunks.count == 2, "\(Layout.inspect(part))")
        let (composed, _) = try Sealing.openForReading(part)
        let merged = composed?.parts.contains { $0.path.hasSuffix("(merged)") } ?? false
        #expect(merged == meeting.1, "\(meeting.0)")
        #expect(try same(views(chunked), views(reference)), "\(meeting.0)")
    }
}
