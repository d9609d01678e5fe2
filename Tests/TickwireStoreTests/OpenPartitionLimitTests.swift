import Foundation
import Testing
import TickwireCore
@testable import TickwireStore

/// Events with many distinct dates open at most `maxOpenPartitions` logs at once, and every one of them is stored.
@Suite struct OpenPartitionLimitTests {
    @Test func manyDatesKeepFewLogsOpenAndLoseNothing() throws {
        let dir = scratchDirectory()
        defer { cleanUp(dir) }
        let ev = Events()
        let w = try StoreWriter(directory: dir, subjects: ev.table, maxOpenPartitions: 4)
        var peak = 0
        // 300 dates, visited twice in an order that keeps evicting: each date's events land in its own log.
        var expected: [Int64] = []
        for round in 0..<2 {
            for day in 0..<300 {
                let at = Nanos(sessionOpen.rawValue + Int64(day) * Nanos.perDay + Int64(round))
                try w.append(ev.trade("MD.XNAS.AAPL.TRADE", at: at, known: at, price: 100 + Int64(day), id: UInt64(round * 1000 + day)))
                expected.append(at.rawValue)
                peak = max(peak, w.openPartitions)
            }
        }
        // (Counted by the writer: the descriptors of this process move with the tests running beside this one.)
        #expect(peak == 4, "\(peak) logs open at once")
        #expect(w.partitionsEvicted >= 590 && w.lostEvents == 0)
        try w.flush()
        try w.close()
        let stored = try StoreReader(directory: dir).events(StoreQuery(subjects: try SubjectPattern(">"), from: t(-3600),
                                                                      to: Nanos(sessionOpen.rawValue + 301 * Nanos.perDay)))
        #expect(stored.map(\.event.eventTime.rawValue).sorted() == expected.sorted())
    }
}

@Suite struct IdlessFillTests {
    /// Fills without a trade id (0) at one instant are all kept, sealed or not: none is taken for a correction.
    @Test func fillsWithoutAnIdAtOneInstantAreAllKept() throws {
        let dir = scratchDirectory()
        defer { cleanUp(dir) }
        let ev = Events()
        let fills = (0..<3).map { ev.trade("MD.BINANCE.BTCUSDT.TRADE", at: t(1), known: t(1 + Double($0)), price: 9682, id: 0) }
        try ev.write(fills, to: dir, seal: false)
        #expect(try read(dir).count == 3)
        let w = try StoreWriter(directory: dir, subjects: ev.table)
        try w.seal()
        try w.close()
        #expect(try read(dir).count == 3)
    }
}

@Suite struct EmptyAnswerTests {
    /// A query that matches nothing says why it probably did: an empty range, a pattern in the wrong case.
    @Test func nothingMatchedSaysWhy() throws {
        let empty = try StoreQuery(subjects: "MD.>", from: "2020-02-22", to: "2020-02-22")
        #expect(empty.whyNothing(pattern: "MD.>").contains("is empty"))
        let lower = try StoreQuery(subjects: "md.xnas.>", from: "2020-02-22", to: "2020-02-23")
        #expect(lower.whyNothing(pattern: "md.xnas.>").contains("did you mean 'MD.XNAS.>'"))
        let none = try StoreQuery(subjects: "MD.>", from: "2020-02-22", to: "2020-02-23", asOf: "2020-02-24")
        #expect(none.whyNothing(pattern: "MD.>") == "no events match 'MD.>' with event times from 2020-02-22T00:00:00.000000000Z to 2020-02-23T00:00:00.000000000Z as known at 2020-02-24T00:00:00.000000000Z")
    }
}
