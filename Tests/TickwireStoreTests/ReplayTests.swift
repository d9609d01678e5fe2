import Foundation
import Testing
import TickwireCore
import TickwireTestSupport
@testable import TickwireStore

@Suite struct ReplayTests {
    let ev = Events()

    func store() throws -> String {
        let dir = scratchDirectory()
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(0), known: t(0), bid: 100, ask: 101),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(0.1), known: t(0.1), price: 100, id: 1),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(0.2), known: t(0.2), bid: 101, ask: 102),
        ], to: dir)
        return dir
    }

    func replay(_ dir: String, _ format: StreamReplaySink.Format, pace: ReplayPace = .max) throws -> [UInt8] {
        let path = dir + "/out-\(UInt32.random(in: 0...UInt32.max))"
        try Replayer.run(StoreReader(directory: dir), StoreQuery(subjects: ">", from: "2026-01-05", to: "2026-01-06"),
                         pace: pace, into: StreamReplaySink(ByteOutput(path: path), format: format))
        return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test func jsonLinesNumberEventsLikeTheLiveFeed() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let lines = String(decoding: try replay(dir, .jsonl), as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix(#"{"subject":"MD.XNAS.AAPL.QUOTE","kind":"QUOTE","seq":1,"subject_seq":1,"#))
        #expect(lines[1].hasPrefix(#"{"subject":"MD.XNAS.AAPL.TRADE","kind":"TRADE","seq":2,"subject_seq":1,"#))
        #expect(lines[2].hasPrefix(#"{"subject":"MD.XNAS.AAPL.QUOTE","kind":"QUOTE","seq":3,"subject_seq":2,"#))
    }

    /// `writeBinary` (the CLI's `--format binary` at full speed) writes the same bytes as the generic replay into a
    /// binary sink: over two days, two streams (MD, TRADE: `seq` per stream), subjects interleaved at equal times.
    @Test func theFastBinaryReplayWritesTheGenericReplaysBytes() throws {
        let seed = testSeed()
        var rng = SplitMix(seed: seed)
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let subjects = (0..<30).map { $0 % 3 == 0 ? "TRADE.DESK\($0 % 2).S\($0)" : "MD.XNAS.S\($0).QUOTE" }
        var events: [Event] = []
        for i in 0..<3_000 {
            let at = t(Double(rng.next() % 2_000) / 10 + (i % 2 == 0 ? 0 : 86_400))   // two days; many equal times
            let s = subjects[Int(rng.next() % UInt64(subjects.count))]
            events.append(s.hasPrefix("MD") ? ev.quote(s, at: at, known: at, bid: 100, ask: 101)
                                             : ev.trade(s, at: at, known: at, price: 100, id: UInt64(i + 1)))
        }
        try ev.write(events, to: dir)
        for (pattern, from, to) in [(">", "2026-01-05", "2026-01-07"), ("MD.>", "2026-01-05", "2026-01-06"), ("TRADE.*.*", "2026-01-06", "2026-01-07")] {
            let q = try StoreQuery(subjects: pattern, from: from, to: to)
            let generic = dir + "/generic", fast = dir + "/fast"
            try Replayer.run(StoreReader(directory: dir), q, pace: .max, into: StreamReplaySink(ByteOutput(path: generic), format: .binary))
            let sent = try Replayer.writeBinary(StoreReader(directory: dir), q, to: ByteOutput(path: fast))
            let a = try Data(contentsOf: URL(fileURLWithPath: generic)), b = try Data(contentsOf: URL(fileURLWithPath: fast))
            #expect(!a.isEmpty && a == b, "\(pattern): \(a.count) against \(b.count) bytes (seed \(seed))")
            #expect(sent > 0)
        }
    }

    @Test func binaryIsTheTwoWireFramesLengthPrefixed() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let bytes = try replay(dir, .binary)
        var o = 0, decoded = [WireEvent]()
        func u32() -> Int { defer { o += 4 }; return Int(bytes[o]) | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2]) << 16 | Int(bytes[o + 3]) << 24 }
        while o < bytes.count {
            let n = u32(); let subject = Array(bytes[o..<o + n]); o += n
            let m = u32(); let payload = Array(bytes[o..<o + m]); o += m
            decoded.append(try WireEvent(subjectFrame: subject, payload: payload))
        }
        #expect(decoded.map(\.subject) == ["MD.XNAS.AAPL.QUOTE", "MD.XNAS.AAPL.TRADE", "MD.XNAS.AAPL.QUOTE"])
        #expect(decoded.map(\.subjectSeq) == [1, 1, 2])
        #expect(decoded.map(\.event.seq) == [1, 2, 3])
        #expect(decoded[1].event.trade.price == Price(e8: 100_000_000))
    }

    @Test func aPacedReplayKeepsTheRecordedGaps() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let start = Date()
        _ = try replay(dir, .jsonl, pace: .speed(2))        // 0.2 s of event time at 2x
        let elapsed = Date().timeIntervalSince(start)
        #expect(elapsed >= 0.095 && elapsed < 2)
        #expect(try ReplayPace(parsing: "10x") == .speed(10))
        #expect(throws: StoreError.self) { try ReplayPace(parsing: "fast") }
    }
}
