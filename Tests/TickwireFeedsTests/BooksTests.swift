import Foundation
import Testing
import TickwireTestSupport
import TickwireCore
@testable import TickwireFeeds

@Suite struct BooksTests {
    static let date = try! TradingDate(parsing: "2019-12-30")

    /// Runs the slice through a normalizer, checking after every message that no book it touched is crossed.
    func runSlice() -> (sink: CollectingSink, normalizer: ITCHNormalizer, crossedAfter: [Int]) {
        let sink = CollectingSink()
        let normalizer = ITCHNormalizer(sink: sink, clock: EasternClock(date: BooksTests.date))
        var crossed = [Int]()
        Fixture.bytes(Fixture.itchSlice).withUnsafeBytes { buf in
            var reader = BinaryFILEReader(buf)
            var i = 0
            while let m = try! reader.next() {
                normalizer.handle(m)
                // Executions, cancels and deletes carry the locate of the order's stock in their header too.
                if normalizer.books.books[Int(m.stockLocate)].top.isCrossed { crossed.append(i) }
                i += 1
            }
        }
        return (sink, normalizer, crossed)
    }

    @Test func tradesOfTheSliceHaveExactPricesAndSizes() {
        let (sink, _, _) = runSlice()
        let trades = sink.events.filter { $0.kind == .trade }.map { e in
            (sink.subjects.text(e.subjectID), e.trade.price.description, e.trade.size.description, e.trade.side, e.trade.tradeID)
        }
        #expect(trades.count == 6)
        let expected: [(String, String, String, Side, UInt64)] = [
            ("MD.XNAS.ROKU.TRADE", "137.7", "84", .sell, 53487),
            ("MD.XNAS.TTWO.TRADE", "124.47", "12", .sell, 53493),
            ("MD.XNAS.HDS.TRADE", "40.43", "6185", .unknown, 53497),
            ("MD.XNAS.HTIA.TRADE", "25.04", "26", .sell, 53536),
            ("MD.XNAS.AKTS.TRADE", "7.88", "1", .sell, 53537),
            ("MD.XNAS.SCWX.TRADE", "16.86", "2432", .unknown, 53563),
        ]
        for (got, want) in zip(trades, expected) {
            #expect(got.0 == want.0); #expect(got.1 == want.1); #expect(got.2 == want.2)
            #expect(got.3 == want.3); #expect(got.4 == want.4)
        }
        let roku = sink.events.first { $0.kind == .trade }!
        #expect(roku.eventTime == Nanos(1_577_716_200_000_697_235))   // 09:30:00.000697235 EST
        #expect(roku.knownTime == roku.eventTime)
    }

    @Test func countersMatchTheCapture() {
        let (_, normalizer, _) = runSlice()
        let c = normalizer.counts
        #expect(c.messages == 1000)
        #expect(c.count(.addOrder) == 367 && c.count(.orderReplace) == 225 && c.count(.addOrderMPID) == 193)
        // The capture documents 394 messages referring to orders added before it; 5 more refer to orders that a
        // U created by replacing one of those, so their side is unknown too and they never rested here.
        #expect(c.unknownOrders == 394 + 5)
        #expect(c.duplicateOrders == 0)
        #expect(c.nonPrintable == 1)           // the one C is marked N
        #expect(c.emptyCrosses == 2)           // PSQ and VICI crossed 0 shares
        #expect(c.trades == 6)
        #expect(c.statuses == 1 + 2 * 4)     // the S, and each of the 4 NOII as an imbalance and its prices
    }

    @Test func booksAreNeverCrossedAndQuotesFollowTheTop() {
        let (sink, normalizer, crossed) = runSlice()
        #expect(crossed.isEmpty, "crossed after messages \(crossed.prefix(10))")
        var lastQuote: [SubjectID: Quote] = [:]
        for e in sink.events where e.kind == .quote {
            let q = e.quote
            if q.bidSize.e8 > 0 && q.askSize.e8 > 0 { #expect(q.bid < q.ask) }
            #expect(lastQuote[e.subjectID] != q, "a QUOTE is published only when the top changes")
            lastQuote[e.subjectID] = q
        }
        #expect(!lastQuote.isEmpty)
        // The last quote of each symbol is its book's top now.
        for l in 0..<(1 << 16) {
            guard let sym = normalizer.symbol(locate: UInt16(l)),
                  let id = sink.subjects.lookup("MD.XNAS.\(sym).QUOTE"), let q = lastQuote[id] else { continue }
            #expect(normalizer.books.books[l].top.quote == q)
        }
    }

    @Test func systemEventIsAFeedStatus() {
        let (sink, _, _) = runSlice()
        // The session's one S (the slice's NOII are the desk's categories: DeskStatusTests).
        let status = sink.events.filter { $0.kind == .status && !$0.status.category.hasNumbers }
        #expect(status.count == 1)
        #expect(sink.subjects.text(status[0].subjectID) == "MD.XNAS._FEED.STATUS")
        #expect(status[0].status == Status(category: .system, state: UInt8(ascii: "Q")))
        #expect(status[0].eventTime == Nanos(1_577_716_200_000_075_566))
    }

    @Test func bustRepeatsTheVoidedTrade() {
        // The slice's first P (ROKU, match 53487), then a B voiding match 53487 on the same locate.
        let slice = Fixture.bytes(Fixture.itchSlice)
        var p: [UInt8] = []
        slice.withUnsafeBytes { buf in
            var reader = BinaryFILEReader(buf)
            while p.isEmpty, let m = try! reader.next() {
                if m.type == .trade { p = [0, UInt8(m.length)] + Array(UnsafeRawBufferPointer(start: m.base, count: m.length)) }
            }
        }
        var b: [UInt8] = [0, 19, UInt8(ascii: "B")] + p[3..<13]       // locate, tracking, timestamp of the P
        for i in (0..<8).reversed() { b.append(UInt8(truncatingIfNeeded: UInt64(53487) >> (8 * UInt64(i)))) }
        let sink = CollectingSink()
        let normalizer = ITCHNormalizer(sink: sink, clock: EasternClock(date: BooksTests.date))
        (p + b).withUnsafeBytes { buf in
            var reader = BinaryFILEReader(buf)
            while let m = try! reader.next() { normalizer.handle(m) }
        }
        #expect(sink.events.map(\.kind) == [.trade, .bust])
        let bust = sink.events[1]
        #expect(sink.subjects.text(bust.subjectID) == "MD.XNAS.ROKU.BUST")
        #expect(bust.bustBody == Bust(tradeID: 53487, price: Price(units: 1_377_000, decimals: 4), size: Quantity(units: 84, decimals: 0), side: .sell))
    }

    @Test func bookLevelsAggregateAndRemoveExactly() {
        let set = OrderBookSet(expectedLiveOrders: 4)
        #expect(set.add(1, locate: 7, side: .bid, price: 100, shares: 10))
        #expect(set.add(2, locate: 7, side: .bid, price: 101, shares: 5))
        #expect(set.add(3, locate: 7, side: .bid, price: 100, shares: 7))
        #expect(set.add(4, locate: 7, side: .ask, price: 103, shares: 9))
        #expect(set.add(5, locate: 7, side: .ask, price: 102, shares: 1))
        #expect(!set.add(5, locate: 7, side: .ask, price: 102, shares: 1))
        #expect(set.books[7].bids == [PriceLevel(price: 100, shares: 17), PriceLevel(price: 101, shares: 5)])
        #expect(set.books[7].asks == [PriceLevel(price: 103, shares: 9), PriceLevel(price: 102, shares: 1)])
        #expect(set.takeChangedTop(7) == TopOfBook(bid: 101, bidShares: 5, ask: 102, askShares: 1))
        #expect(set.takeChangedTop(7) == nil)
        #expect(set.reduce(2, by: 3)?.shares == 5)
        #expect(set.delete(5)?.price == 102)
        #expect(set.replace(3, with: 30, shares: 4, price: 99)?.shares == 7)
        #expect(set.books[7].bids == [PriceLevel(price: 99, shares: 4), PriceLevel(price: 100, shares: 10), PriceLevel(price: 101, shares: 2)])
        #expect(set.takeChangedTop(7) == TopOfBook(bid: 101, bidShares: 2, ask: 103, askShares: 9))
        #expect(set.delete(12345) == nil)
        #expect(set.reduce(2, by: 99)?.shares == 2)   // over-execution takes what remains
        #expect(set.orders.find(2) == -1)
    }

    /// Random inserts and deletes against a `Set`. Seeded: a new seed each run (TICKWIRE_TEST_SEED repeats
    /// one), named in every failure.
    @Test func orderTableSurvivesGrowthAndBackwardShiftDeletes() {
        let seed = testSeed()
        let table = OrderTable(expectedLive: 4)
        var live = Set<UInt64>()
        var rng = SplitMix(seed: seed)
        for step in 0..<20_000 {
            let ref = UInt64.random(in: 0..<3_000, using: &rng)
            if live.contains(ref) {
                let slot = table.find(ref)
                #expect(slot >= 0, "seed \(seed) step \(step)")
                table.remove(slot: slot); live.remove(ref)
            } else {
                #expect(table.insert(ref, RestingOrder(price: UInt32(ref), shares: UInt32(step), locate: 1, side: .bid)), "seed \(seed) step \(step)")
                live.insert(ref)
            }
        }
        #expect(table.count == live.count, "seed \(seed)")
        for ref in 0..<UInt64(3_000) {
            let slot = table.find(ref)
            #expect((slot >= 0) == live.contains(ref), "seed \(seed) ref \(ref)")
            if slot >= 0 { #expect(table[slot: slot].price == UInt32(ref), "seed \(seed) ref \(ref)") }
        }
        #expect(table.resizes > 0, "seed \(seed)")
    }
}


