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
