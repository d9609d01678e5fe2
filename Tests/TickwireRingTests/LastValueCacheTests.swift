import Foundation
import Synchronization
import Testing
import TickwireCore
@testable import TickwireRing

@Suite(.serialized, .timeLimit(.minutes(5)))
struct LastValueCacheTests {
    @Test func keepsTheLatestQuoteTradeAndStatusPerSubject() {
        let lvc = LastValueCache(maxSubjects: 8)
        #expect(lvc.latest(subjectID: 1, kind: .quote) == nil)
        var q1 = quote(1, 5); q1.seq = 1
        var q2 = quote(1, 6); q2.seq = 2
        var t = Event.trade(1, price: Price(e8: 9), size: Quantity(e8: 2), side: .sell, tradeID: 3, eventTime: Nanos(1), knownTime: Nanos(2))
        t.seq = 3
        var book = Event(subjectID: 1, kind: .book, eventTime: Nanos(1), knownTime: Nanos(1)); book.seq = 4
        for e in [q1, q2, t, book] { lvc.update(e) }
        #expect(lvc.latest(subjectID: 1, kind: .quote) == q2)
        #expect(lvc.latest(subjectID: 1, kind: .trade) == t)
        #expect(lvc.latest(subjectID: 1, kind: .book) == nil)
        #expect(lvc.count == 2)
        var seen: [UInt64] = []
        lvc.forEachEntry(upTo: 2) { seen.append($0.seq) }
        #expect(seen == [2])
        var over = quote(8, 1); over.seq = 5
        lvc.update(over)
        #expect(lvc.overflowed == 1)
    }

    @Test func readersNeverSeeATornEntry() {
        let lvc = LastValueCache(maxSubjects: 4)
        let stop = Atomic<Bool>(false)
        let torn = Shared(0)
        let readers = (0..<2).map { _ in
            TestThread {
                var bad = 0
                while !stop.load(ordering: .relaxed) {
                    lvc.forEachEntry { if !isIntact($0) { bad += 1 } }
                }
                torn.with { $0 += bad }
            }
        }
        for i in 1...300_000 { var e = quote(SubjectID(i % 4), Int64(i)); e.seq = UInt64(i); lvc.update(e) }
        stop.store(true, ordering: .relaxed)
        readers.forEach { $0.join() }
        #expect(torn.get == 0)
        #expect(lvc.latest(subjectID: 0, kind: .quote)?.a == 300_000)
    }
}
