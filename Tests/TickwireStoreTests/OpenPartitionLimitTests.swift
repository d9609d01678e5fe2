import Foundation
import Testing
import TickwireCore
@testable import TickwireStore

/// Events with many distinct dates open at most `maxOpenPartitions` logs at once, and every one of them is stored.
@Suite struct OpenPartitionLimitTests {
    static func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0 }

    @Test func manyDatesKeepFewLogsOpenAndLoseNothing() throws {
        let dir = scratchDirectory()
        defer { cleanUp(dir) }
        let ev = Events()
        let w = try StoreWriter(directory: dir, subjects: ev.table, maxOpenPartitions: 4)
        let before = Self.openDescriptors()
        var peak = 0
        // 300 dates, visited twice in an order that keeps evicting: each date's events land in its own log.
        var expected: [Int64] = []
        for round in 0..<2 {
            for day in 0..<300 {
                let at = Nanos(sessionOpen.rawValue + Int64(day) * Nanos.perDay + Int64(round))
                try w.append(ev.trade("MD.XNAS.AAPL.TRADE", at: at, known: at, price: 100 + Int64(day), id: UInt64(round * 1000 + day)))
                expected.append(at.rawValue)
                peak = max(peak, Self.openDescriptors() - before)
            }
        }
        #expect(peak <= 4, "open descriptors grew by \(peak)")
        #expect(w.partitionsEvicted >= 590 && w.lostEvents == 0)
        try w.flush()
        try w.close()
        let stored = try StoreReader(directory: dir).events(StoreQuery(subjects: try SubjectPattern(">"), from: t(-3600),
                                                                      to: Nanos(sessionOpen.rawValue + 301 * Nanos.perDay)))
        #expect(stored.map(\.event.eventTime.rawValue).sorted() == expected.sorted())
    }
}
