import Foundation
import Testing
import TickwireCore
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
