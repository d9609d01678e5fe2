import Foundation
import Testing
import TickwireCore
@testable import TickwireStore

/// Known time as a read axis: what a live system could have seen, in the order it saw it.
@Suite(.timeLimit(.minutes(5))) struct KnownTimeTests {
    let ev = Events()

    /// A quote that happened before a trade but arrived after it; a trade corrected and another busted later.
    func fixture(_ dir: String, seal: Bool = true) throws {
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(0), known: t(0.1), bid: 100, ask: 101),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(1), known: t(1.1), price: 100, id: 5),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2.5), price: 102, id: 6),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1.5), known: t(3), bid: 104, ask: 105),   // late
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(1), known: t(4), price: 103, id: 5),     // correction of id 5
            ev.bust("MD.XNAS.AAPL.BUST", at: t(2), known: t(6), id: 6),
        ], to: dir, seal: seal)
    }

    func known(_ dir: String, from: Nanos = t(-10), to: Nanos = t(100), asOf: Nanos? = nil) throws -> [String] {
        var q = try StoreQuery(subjects: SubjectPattern(">"), from: from, to: to, asOf: asOf)
        q.time = .known
        return digest(try StoreReader(directory: dir).events(q))
    }

    @Test func aKnownTimeReplayDeliversEveryVersionInArrivalOrder() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try fixture(dir)
        let s = 1_000_000_000
        let expected = [
            "MD.XNAS.AAPL.QUOTE QUOTE e=0 k=\(s / 10) a=100000000",
            "MD.XNAS.AAPL.TRADE TRADE e=\(s) k=\(s + s / 10) a=100000000",
            "MD.XNAS.AAPL.TRADE TRADE e=\(2 * s) k=\(2 * s + s / 2) a=102000000",
            "MD.XNAS.AAPL.QUOTE QUOTE e=\(s + s / 2) k=\(3 * s) a=104000000",
            "MD.XNAS.AAPL.TRADE TRADE e=\(s) k=\(4 * s) a=103000000",
            "MD.XNAS.AAPL.BUST BUST e=\(2 * s) k=\(6 * s) a=0",
        ]
        #expect(try known(dir) == expected)
        // The window and --as-of are on known time.
        #expect(try known(dir, from: t(1.1), to: t(4)) == Array(expected[1...3]))
        #expect(try known(dir, asOf: t(3)) == Array(expected[0...3]))
        // The event-time replay of the same store: corrections applied, the busted trade gone, event order.
        #expect(digest(try read(dir)).map { $0.split(separator: " ")[0...1].joined(separator: " ") }
                == ["MD.XNAS.AAPL.QUOTE QUOTE", "MD.XNAS.AAPL.TRADE TRADE", "MD.XNAS.AAPL.QUOTE QUOTE", "MD.XNAS.AAPL.BUST BUST"])
        // Unsealed, and in chunks: the same.
        let open = scratchDirectory(); defer { cleanUp(open) }
        try fixture(open, seal: false)
        #expect(try known(open) == expected)
    }

    @Test func aKnownTimeJoinNeverTakesAQuoteNotYetKnown() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try fixture(dir)
        func join(_ time: TimeAxis) throws -> [String] {
            var j = try AsOfJoin(trades: SubjectPattern("MD.XNAS.*.TRADE"), quotes: SubjectPattern("MD.XNAS.*.QUOTE"),
                                 from: t(-10), to: t(100))
            j.time = time
            var rows = [String]()
            try StoreReader(directory: dir).asOfJoin(j) { b in
                for i in 0..<b.count {
                    let r = b.row(i)
                    rows.append("\(r.price) k=\(r.knownTime.rawValue - sessionOpen.rawValue) bid=\(r.quote.map { "\($0.bid)" } ?? "-")")
                }
            }
            return rows
        }
        // By event time: the corrected trade only (the other was busted), with the quote prevailing at its time.
        #expect(try join(.event) == ["1.03 k=4000000000 bid=1"])
        // By known time each trade version takes the quote known when it arrived.
        #expect(try join(.known) == ["1 k=1100000000 bid=1", "1.02 k=2500000000 bid=1", "1.03 k=4000000000 bid=1.04"])
    }

    /// The Arrow rows of a known-time replay and join are the rows the known-time reads give, in their order.
    @Test func arrowAlongKnownTimeHasTheKnownTimeRows() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try fixture(dir)
        let reader = try StoreReader(directory: dir)
        var q = try StoreQuery(subjects: SubjectPattern(">"), from: t(-10), to: t(100))
        q.time = .known
        let replay = RowSink()
        #expect(try Frames.replay(reader, q) { replay.fields = $0; return replay } == 6)
        // subject, kind, event time, known time, then the payload words a…d.
        #expect(replay.rows.map { r in [replay.text(0, r[0]), replay.text(1, r[1])] + [r[2], r[3], r[14], r[15], r[16], r[17]].map(String.init) }
                == (try reader.events(q)).map { s in [s.subject, s.event.kind.name] + [s.event.eventTime.rawValue, s.event.knownTime.rawValue,
                                                                                  s.event.a, s.event.b, s.event.c, s.event.d].map(String.init) })
        var j = try AsOfJoin(trades: SubjectPattern("MD.XNAS.*.TRADE"), quotes: SubjectPattern("MD.XNAS.*.QUOTE"), from: t(-10), to: t(100))
        j.time = .known
        let join = RowSink()
        #expect(try Frames.asOfJoin(reader, j) { join.fields = $0; return join } == 3)
        var expected = [[Int64]]()
        try reader.asOfJoin(j) { b in
            for i in 0..<b.count {
                let m = b.match[i]
                expected.append([b.trades.knownTime[i], b.trades.a[i], m < 0 ? 0 : b.quotes.knownTime[m], m < 0 ? 0 : b.quotes.bid[m]])
            }
        }
        // known_time, price, quote_known_time, bid: each trade version with the quote known when it arrived.
        #expect(join.rows.map { [$0[2], $0[3], $0[8], $0[9]] } == expected && expected.allSatisfy { $0[2] <= $0[0] })
        // Pinned, not only agreeing with the join it is built from: the trades known at 1.1 s and 2.5 s took the quote
        // known at 0.1 s, the correction known at 4 s the late quote known at 3 s.
        #expect(join.rows.map { $0[8] } == [t(0.1), t(0.1), t(3)].map(\.rawValue))
    }
}

/// Collects a frame writer's rows, column values as stored (text as dictionary indices, nulls as 0).
final class RowSink: FrameSink {
    var fields = [FrameField]()
    var rows = [[Int64]]()
    func write(_ batch: FrameBatch) throws {
        for r in 0..<batch.rows { rows.append(fields.indices.map { batch.column($0)[r] }) }
    }
    func finish() throws {}
    func text(_ column: Int, _ value: Int64) -> String { fields[column].dictionary[Int(value)] }
}
