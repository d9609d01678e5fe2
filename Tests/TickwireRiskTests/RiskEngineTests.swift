import Foundation
import Synchronization
import Testing
import TickwireCore
import TickwireRisk

func e8(_ s: String) -> Int64 { try! FixedPoint.parseE8(s) }
func q(_ s: String) -> Quantity { Quantity(e8: e8(s)) }
func px(_ s: String) -> Price { Price(e8: e8(s)) }

/// DESK7's tight limits: every one of them reachable in a few trades.
let desk7 = RiskLimits(maxPosition: q("1000"), maxGrossNotional: Notional(e8: e8("200000")), maxLoss: Notional(e8: e8("5000")),
                       maxOrderQuantity: q("500"), maxOrderNotional: Notional(e8: e8("60000")), priceCollarBps: 500)

func engine() -> RiskEngine { RiskEngine(config: RiskConfig(default: .embeddedDefault, desks: ["DESK7": desk7])) }

func trade(_ desk: String, _ symbol: String, _ side: Side, _ quantity: String, at price: String) -> RiskTrade {
    RiskTrade(desk: desk, symbol: symbol, side: side, quantity: q(quantity), price: px(price))
}

/// DESK7 in AAPL.
func trade(_ side: Side, _ quantity: String, at price: String) -> RiskTrade { trade("DESK7", "AAPL", side, quantity, at: price) }

@Suite(.timeLimit(.minutes(5))) struct RiskLimitTests {
    let risk = engine()

    @Test func tradesRiskCannotPriceAreInvalid() {
        #expect(risk.submit(trade(.buy, "0", at: "100"))?.limit == .invalidTrade)
        #expect(risk.submit(trade(.buy, "1", at: "0"))?.limit == .invalidTrade)
        #expect(risk.submit(trade(.unknown, "1", at: "100"))?.limit == .invalidTrade)
        #expect(risk.rejected(.invalidTrade) == 3)
        #expect(risk.positions(desk: "DESK7").isEmpty)
    }

    @Test func orderQuantity() {
        let r = risk.submit(trade(.buy, "500.00000001", at: "1"))
        #expect(r == RiskRejection(limit: .maxOrderQuantity, desk: "DESK7", symbol: "AAPL", valueE8: e8("500.00000001"), limitE8: e8("500")))
        #expect(r?.description == "desk DESK7: order quantity 500.00000001 AAPL exceeds max_order_quantity 500")
        #expect(risk.submit(trade(.buy, "500", at: "1")) == nil)
        #expect(risk.rejected(.maxOrderQuantity) == 1)
    }

    @Test func orderNotional() {
        let r = risk.submit(trade(.sell, "500", at: "120.01"))
        #expect(r == RiskRejection(limit: .maxOrderNotional, desk: "DESK7", symbol: "AAPL", valueE8: e8("60005"), limitE8: e8("60000")))
        #expect(r?.description == "desk DESK7: order notional 60005 in AAPL exceeds max_order_notional 60000")
        #expect(risk.submit(trade(.sell, "500", at: "120")) == nil)
    }

    @Test func priceCollarAgainstTheLastMark() {
        #expect(risk.check(trade(.buy, "1", at: "1000")) == nil)        // no mark yet: no collar
        risk.mark(symbol: "AAPL", price: px("100"))
        #expect(risk.check(trade(.buy, "1", at: "105")) == nil)          // exactly 500 bps
        #expect(risk.check(trade(.buy, "1", at: "95")) == nil)
        let r = risk.check(trade(.buy, "1", at: "105.01"))
        #expect(r == RiskRejection(limit: .priceCollar, desk: "DESK7", symbol: "AAPL", valueE8: e8("501"), limitE8: e8("500")))
        #expect(r?.description == "desk DESK7: price is 501 bps from the AAPL market, beyond price_collar_bps 500")
        #expect(risk.check(trade(.sell, "1", at: "94.99"))?.limit == .priceCollar)
    }

    @Test func requireMark() {
        var strict = desk7
        strict.requireMark = true
        let risk = RiskEngine(config: RiskConfig(desks: ["DESK7": strict]))
        #expect(risk.check(trade(.buy, "1", at: "100"))?.description == "desk DESK7: no market price for AAPL yet, and require_mark is on")
        risk.mark(symbol: "AAPL", price: px("100"))
        #expect(risk.check(trade(.buy, "1", at: "100")) == nil)
    }

    @Test func positionLongAndShortAndReducingIsAlwaysAllowed() {
        #expect(risk.submit(trade(.buy, "500", at: "100")) == nil)
        #expect(risk.submit(trade(.buy, "500", at: "100")) == nil)   // 1000: at the limit
        let r = risk.submit(trade(.buy, "0.00000001", at: "100"))
        #expect(r == RiskRejection(limit: .maxPosition, desk: "DESK7", symbol: "AAPL", valueE8: e8("1000.00000001"), limitE8: e8("1000")))
        #expect(r?.description == "desk DESK7: position in AAPL would be 1000.00000001, beyond max_position 1000")
        #expect(risk.submit(trade(.sell, "500", at: "100")) == nil)
        #expect(risk.submit(trade(.sell, "500", at: "100")) == nil)
        #expect(risk.submit(trade(.sell, "500", at: "100")) == nil)
        #expect(risk.submit(trade(.sell, "500", at: "100")) == nil)  // short 1000
        #expect(risk.submit(trade(.sell, "1", at: "100"))?.limit == .maxPosition)
        #expect(risk.submit(trade(.buy, "1", at: "100")) == nil)
        #expect(risk.positions(desk: "DESK7").map(\.quantity) == [q("-999")])
    }

    @Test func grossNotionalAcrossSymbolsAtTheirMarks() {
        risk.mark(symbol: "AAPL", price: px("100"))
        risk.mark(symbol: "MSFT", price: px("200"))
        for _ in 0..<2 { #expect(risk.submit(trade(.buy, "500", at: "100")) == nil) }     // 100,000
        for _ in 0..<2 { #expect(risk.submit(trade("DESK7", "MSFT", .sell, "250", at: "200")) == nil) } // +100,000
        #expect(risk.usage(desk: "DESK7").notional == e8("200000"))
        let r = risk.submit(trade("DESK7", "MSFT", .sell, "1", at: "200"))
        #expect(r == RiskRejection(limit: .maxGrossNotional, desk: "DESK7", symbol: "MSFT", valueE8: e8("200200"), limitE8: e8("200000")))
        #expect(r?.description == "desk DESK7: gross notional would be 200200 (after MSFT), beyond max_gross_notional 200000")
        // Marks move the gross: MSFT at 190 frees 5,000 of room.
        risk.mark(symbol: "MSFT", price: px("190"))
        #expect(risk.submit(trade("DESK7", "MSFT", .sell, "26", at: "190")) == nil)       // 195,000 + 4,940
        #expect(risk.submit(trade("DESK7", "MSFT", .sell, "1", at: "190"))?.limit == .maxGrossNotional)
    }

    @Test func creditLimitOnRealizedPlusUnrealizedLoss() {
        #expect(risk.submit(trade(.buy, "500", at: "100")) == nil)
        risk.mark(symbol: "AAPL", price: px("90"))
        #expect(risk.usage(desk: "DESK7").pnl == e8("-5000"))                 // at the floor, not beyond
        #expect(risk.submit(trade(.buy, "1", at: "90")) == nil)
        risk.mark(symbol: "AAPL", price: px("89.99"))
        // 501 × 89.99 − (50,000 + 90) = −5,005.01; one more share at the mark adds no loss but more risk.
        let r = risk.submit(trade(.buy, "1", at: "89.99"))
        #expect(r == RiskRejection(limit: .maxLoss, desk: "DESK7", symbol: "AAPL", valueE8: e8("5005.01"), limitE8: e8("5000")))
        #expect(r?.description == "desk DESK7: P&L would be -5005.01 (after AAPL), beyond max_loss 5000")
        #expect(risk.submit(trade(.sell, "1", at: "89.99")) == nil)           // reducing is allowed
    }

    @Test func buyingAboveTheMarketCountsTheLossAtOnce() {
        var limits = RiskLimits.unlimited
        limits.maxLoss = Notional(e8: e8("1000"))
        let risk = RiskEngine(config: RiskConfig(default: limits))
        risk.mark(symbol: "MSFT", price: px("100"))
        #expect(risk.submit(trade("D", "MSFT", .buy, "200", at: "105")) == nil)     // 200 × −5 = −1,000: at the floor
        #expect(risk.usage(desk: "D").pnl == e8("-1000"))
        #expect(risk.submit(trade("D", "MSFT", .buy, "1", at: "100.01"))?.valueE8 == e8("1000.01"))
    }

    @Test func aRejectedSubmitChangesNothing() {
        #expect(risk.submit(trade(.buy, "400", at: "100")) == nil)
        let before = risk.positions(desk: "DESK7")
        #expect(risk.submit(trade(.buy, "700", at: "100")) != nil)
        #expect(risk.positions(desk: "DESK7") == before)
        #expect(risk.check(trade(.buy, "500", at: "100")) == nil)                // check alone applies nothing
        #expect(risk.positions(desk: "DESK7") == before)
    }
}

@Suite(.timeLimit(.minutes(5))) struct EmbeddedDefaultTests {
    @Test func aFatFingerTradeIsRejectedOutOfTheBox() {
        let risk = RiskEngine()
        risk.mark(symbol: "AAPL", price: px("100"))
        #expect(risk.check(trade("ANY", "AAPL", .buy, "1000000", at: "100"))?.limit == .maxOrderQuantity)
        #expect(risk.check(trade("ANY", "AAPL", .buy, "100", at: "150"))?.limit == .priceCollar)
        #expect(risk.check(trade("ANY", "AAPL", .sell, "100", at: "50"))?.limit == .priceCollar)
        #expect(risk.check(trade("ANY", "AAPL", .buy, "60000", at: "100"))?.limit == .maxOrderNotional)
        #expect(risk.check(trade("ANY", "AAPL", .buy, "100", at: "100.5")) == nil)
    }
}

@Suite(.timeLimit(.minutes(5))) struct PositionAndPnLTests {
    @Test func averageCostAndRealizedPnLAreExactThroughAFlip() {
        let risk = engine()
        for t in [trade("D", "X", .buy, "100", at: "10.01"), trade("D", "X", .buy, "200", at: "10.04"),
                  trade("D", "X", .sell, "150", at: "10.10"), trade("D", "X", .sell, "250", at: "9.99")] {
            risk.apply(t)
        }
        // Long 300 at 10.03; sell 150 at 10.10 (+10.5); sell 150 at 9.99 (−6) and 100 more opens a short at 9.99.
        #expect(risk.positions(desk: "D") == [RiskPosition(symbol: "X", quantity: q("-100"), averageCost: px("9.99"),
                                                            realized: Notional(e8: e8("4.5")), unrealized: .zero, valuation: px("9.99"))])
        risk.apply(trade("D", "X", .buy, "100", at: "10.00"))                  // closing the short costs 1
        #expect(risk.positions(desk: "D").map(\.realized) == [Notional(e8: e8("3.5"))])
        #expect(risk.usage(desk: "D") == RiskUse(position: 0, notional: 0, pnl: e8("3.5"), usedBasisPoints: 0))
    }

    @Test func unrealizedPnLIsMarkedToTheMarket() {
        let risk = engine()
        risk.apply(trade("D", "Y", .buy, "3", at: "10"))
        risk.apply(trade("D", "Y", .buy, "1", at: "11"))                       // average 10.25
        risk.apply(trade("D", "Y", .sell, "1", at: "12"))                      // realized 1.75
        risk.mark(symbol: "Y", price: px("11"))
        #expect(risk.positions(desk: "D") == [RiskPosition(symbol: "Y", quantity: q("3"), averageCost: px("10.25"),
                                                            realized: Notional(e8: e8("1.75")), unrealized: Notional(e8: e8("2.25")),
                                                            valuation: px("11"))])
        #expect(risk.usage(desk: "D") == RiskUse(position: e8("3"), notional: e8("33"), pnl: e8("4"), usedBasisPoints: 0))
    }

    @Test func usageIsTheTightestLimitInBasisPoints() {
        let risk = engine()
        risk.mark(symbol: "AAPL", price: px("100"))
        risk.apply(trade(.buy, "250", at: "100"))                              // position 25%, gross 12.5%
        #expect(risk.usage(desk: "DESK7").usedBasisPoints == 2_500)
        risk.mark(symbol: "AAPL", price: px("84"))                             // loss 4,000 of 5,000: 80%
        #expect(risk.usage(desk: "DESK7") == RiskUse(position: e8("250"), notional: e8("21000"), pnl: e8("-4000"), usedBasisPoints: 8_000))
    }

    @Test func rebuildFromTheJournalGivesIdenticalState() {
        let table = SubjectTable()
        let live = engine()
        live.mark(symbol: "AAPL", price: px("100"))
        live.mark(symbol: "MSFT", price: px("200"))
        var journal: [Event] = []
        let script: [(String, String, Side, String, String)] = [
            ("DESK7", "AAPL", .buy, "300", "99.5"), ("DESK7", "MSFT", .sell, "120", "201.25"), ("DESK8", "AAPL", .sell, "77.5", "100.01"),
            ("DESK7", "AAPL", .sell, "450", "100.5"), ("DESK7", "AAPL", .buy, "700", "101"), ("DESK8", "AAPL", .buy, "200", "99.99"),
            ("DESK7", "MSFT", .buy, "33.33333333", "199.01"),
        ]
        for (i, (desk, symbol, side, quantity, price)) in script.enumerated() {
            let t = trade(desk, symbol, side, quantity, at: price)
            guard live.submit(t) == nil else { continue }              // the 700 breaches DESK7's order quantity
            journal.append(.trade(table.intern(text: "TRADE.\(desk).\(symbol)"), price: t.price, size: t.quantity, side: side,
                                  tradeID: UInt64(i), eventTime: Nanos(Int64(i)), knownTime: Nanos(Int64(i))))
        }
        #expect(journal.count == 6)
        let restarted = engine()
        restarted.mark(symbol: "AAPL", price: px("100"))
        restarted.mark(symbol: "MSFT", price: px("200"))
        restarted.apply(trade("DESK9", "JUNK", .buy, "1", at: "1"))   // state from before is forgotten
        restarted.rebuild(from: journal.compactMap { RiskTrade(event: $0, subjectText: table.text($0.subjectID)) })
        #expect(restarted.desks == ["DESK7", "DESK8"])
        for desk in ["DESK7", "DESK8"] {
            #expect(restarted.positions(desk: desk) == live.positions(desk: desk))
            #expect(restarted.usage(desk: desk) == live.usage(desk: desk))
        }
        #expect(live.positions(desk: "DESK8").map(\.quantity) == [q("122.5")])
    }
}

@Suite(.timeLimit(.minutes(5))) struct MarkerTests {
    @Test func marksBySymbolFromQuoteMidsAndTradesOnAnyVenue() {
        let risk = engine()
        let table = SubjectTable()
        let marker = risk.makeMarker(subjects: table)
        let quote = table.intern(text: "MD.XNAS.AAPL.QUOTE"), arcx = table.intern(text: "MD.ARCX.AAPL.TRADE")
        let desk = table.intern(text: "TRADE.DESK7.AAPL"), status = table.intern(text: "MD.XNAS.AAPL.STATUS")
        marker.mark(.quote(quote, bid: px("100"), bidSize: q("1"), ask: px("100.03"), askSize: q("1"), eventTime: .zero, knownTime: .zero))
        #expect(risk.markPrice(symbol: "AAPL") == px("100.015"))
        marker.mark(.trade(arcx, price: px("100.05"), size: q("1"), side: .buy, tradeID: 1, eventTime: .zero, knownTime: .zero))
        #expect(risk.markPrice(symbol: "AAPL") == px("100.05"))
        marker.mark(.trade(desk, price: px("500"), size: q("1"), side: .buy, tradeID: 1, eventTime: .zero, knownTime: .zero))
        marker.mark(.quote(quote, bid: px("90"), bidSize: q("0"), ask: px("100"), askSize: q("1"), eventTime: .zero, knownTime: .zero))
        marker.mark(.status(status, Status(category: .trading, state: UInt8(ascii: "H")), eventTime: .zero, knownTime: .zero))
        #expect(risk.markPrice(symbol: "AAPL") == px("100.05"))
        #expect(risk.markPrice(symbol: "MSFT") == nil)
    }

    @Test func marksFromABatchOfEvents() {
        let risk = engine()
        let table = SubjectTable()
        let marker = risk.makeMarker(subjects: table)
        let events: [Event] = ["A", "B", "A"].enumerated().map { i, s in
            .trade(table.intern(text: "MD.XNAS.\(s).TRADE"), price: Price(e8: Int64(i + 1)), size: q("1"), side: .buy, tradeID: 0,
                   eventTime: .zero, knownTime: .zero)
        }
        events.withUnsafeBufferPointer { marker.mark($0) }
        #expect(risk.markPrice(symbol: "A") == Price(e8: 3))
        #expect(risk.markPrice(symbol: "B") == Price(e8: 2))
    }

    @Test func marksBeyondCapacityAreDroppedAndCounted() {
        let risk = RiskEngine(maxSymbols: 2)
        for s in ["A", "B", "C"] { risk.mark(symbol: s, price: px("1")) }
        #expect(risk.markPrice(symbol: "B") == px("1"))
        #expect(risk.markPrice(symbol: "C") == nil)
        #expect(risk.droppedMarkSymbols == 1)
    }

    /// The market-data thread marks while two threads submit against one position limit of 1, 20,000 rounds each:
    /// each buy that is accepted must find the position flat and leave it at exactly 1 until its own thread
    /// sells, and every submit is counted once. An engine that checks and applies under separate locks lets both buys through
    /// (a position of 2); one without a lock loses updates (a position or a rejection count that does not add
    /// up). Runs under `swift test --sanitize=thread` too (Tools/test.sh): the marks take no lock.
    @Test func markingWhileTwoThreadsSubmitAgainstOneLimit() {
        var limits = RiskLimits.unlimited
        limits.maxPosition = q("1")
        let risk = RiskEngine(config: RiskConfig(default: limits))
        let table = SubjectTable()
        let id = table.intern(text: "MD.XNAS.AAPL.TRADE")
        let marker = risk.makeMarker(subjects: table)
        let marking = TestThread {
            for i in 0..<200_000 {
                marker.mark(.trade(id, price: Price(e8: 10_000_000_000 + Int64(i % 100)), size: q("1"), side: .buy, tradeID: 0,
                                   eventTime: .zero, knownTime: .zero))
            }
        }
        let rounds = 20_000
        struct Tally: Sendable { var buys = 0, accepted = 0, sellsRejected = 0; var bad: [String] = [] }
        let tallies = (0..<2).map { _ in Locked(Tally()) }
        let ready = Atomic<Int>(0)
        let submitters = tallies.map { tally in
            TestThread {
                var t = Tally()
                ready.add(1, ordering: .relaxed)
                while ready.load(ordering: .relaxed) < 2 { sched_yield() }   // both start together
                for _ in 0..<rounds {
                    t.buys += 1
                    guard risk.submit(trade("D", "AAPL", .buy, "1", at: "100")) == nil else { continue }
                    t.accepted += 1
                    // Only this thread may hold the one share now: the other's buys are rejected until it sells.
                    let held = risk.positions(desk: "D").first?.quantity
                    if held != q("1"), t.bad.count < 5 { t.bad.append("after an accepted buy the position was \(held.map { "\($0)" } ?? "none")") }
                    if risk.submit(trade("D", "AAPL", .sell, "1", at: "100")) != nil { t.sellsRejected += 1 }
                }
                tally.withLock { $0 = t }
            }
        }
        submitters.forEach { $0.join() }
        marking.join()
        let t = tallies.map { $0.withLock { $0 } }
        let accepted = t[0].accepted + t[1].accepted, buys = t[0].buys + t[1].buys
        #expect(t[0].bad.isEmpty && t[1].bad.isEmpty, "\(t[0].bad + t[1].bad)")
        #expect(t[0].sellsRejected + t[1].sellsRejected == 0)
        #expect(t[0].accepted > 0 && t[1].accepted > 0, "one thread never got the share: the threads did not contend")
        #expect(risk.rejected(.maxPosition) == UInt64(buys - accepted), "every rejected buy counted once")
        #expect(risk.positions(desk: "D").map(\.quantity) == [.zero])
        #expect(risk.positions(desk: "D").map(\.realized) == [.zero])
        #expect(risk.markPrice(symbol: "AAPL") == Price(e8: 10_000_000_099))
    }
}

/// A thread the test starts and joins.
final class TestThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    init(_ body: @escaping @Sendable () -> Void) {
        Thread { [done] in body(); done.signal() }.start()
    }
    func join() { done.wait() }
}

@Suite(.timeLimit(.minutes(5))) struct RiskConfigTests {
    @Test func desksInheritTheDefaultKeyByKey() throws {
        let config = try RiskConfig.parse(default: ["max_order_quantity": "50_000", "max_loss": "none"],
                                          desks: ["DESK7": ["max_position": "2500.5", "price_collar_bps": "250", "require_mark": "true"]])
        var base = RiskLimits.embeddedDefault
        base.maxOrderQuantity = q("50000")
        base.maxLoss = .unlimited
        #expect(config.default == base)
        var d7 = base
        d7.maxPosition = q("2500.5"); d7.priceCollarBps = 250; d7.requireMark = true
        #expect(config.limits(for: "DESK7") == d7)
        #expect(config.limits(for: "DESK8") == base)
        #expect(try RiskConfig.parse(default: nil, desks: [:]) == RiskConfig())
    }

    @Test(arguments: [
        (["max_postion": "1"], [:], "[risk.default] key 'max_postion': unknown key; one of max_position, max_gross_notional, max_loss, max_order_quantity, max_order_notional, price_collar_bps, require_mark"),
        ([:], ["DESK7": ["max_loss": "-5"]], "[risk.desks.DESK7] key 'max_loss': -5 must be positive (or \"none\" for no limit)"),
        ([:], ["DESK7": ["max_order_notional": "1e6"]], "[risk.desks.DESK7] key 'max_order_notional': invalid number '1e6': 'e' is not a digit"),
        (["price_collar_bps": "2.5"], [:], "[risk.default] key 'price_collar_bps': '2.5' is not a whole number of basis points from 1 to 1000000 (or \"none\")"),
        ([:], ["DESK7": ["require_mark": "1"]], "[risk.desks.DESK7] key 'require_mark': '1' is not true or false"),
        ([:], ["DESK 7": [:]], "[risk.desks.DESK 7]: 'DESK 7' is not a desk name (A-Z a-z 0-9 _ - only: it is a subject token)"),
    ] as [([String: String], [String: [String: String]], String)])
    func aBadValueIsAnErrorNamingTheTableAndKey(defaults: [String: String], desks: [String: [String: String]], message: String) {
        do {
            _ = try RiskConfig.parse(default: defaults, desks: desks)
            Issue.record("accepted a bad config")
        } catch {
            #expect(error.description == message)
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct RiskSnapshotTests {
    /// A checkpoint of the positions plus the trades after it rebuilds exactly what all the trades build, and
    /// the byte form round-trips (the 128-bit cost and P&L included). Random trades from a new seed each run
    /// (TICKWIRE_TEST_SEED repeats one), named in every failure.
    @Test func aSnapshotThenTheRestEqualsEverythingReplayed() throws {
        var trades: [RiskTrade] = []
        let seed = ProcessInfo.processInfo.environment["TICKWIRE_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        var state = seed
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        for _ in 0..<2000 {
            trades.append(RiskTrade(desk: "D\(next() % 3)", symbol: ["AAPL", "MSFT", "NVDA", "Ω-UTF8"][Int(next() % 4)],
                                    side: next() % 2 == 0 ? .buy : .sell, quantity: Quantity(e8: Int64(next() % 500 + 1) * 100_000_000),
                                    price: Price(e8: Int64(next() % 40_000 + 10_000) * 1_000_000)))
        }
        let all = RiskEngine()
        all.rebuild(from: trades)
        let first = RiskEngine()
        first.rebuild(from: trades.prefix(1234))
        let bytes = first.snapshot().bytes
        let decoded = try #require(RiskEngine.Snapshot(bytes: bytes), "seed \(seed)")
        #expect(decoded == first.snapshot(), "seed \(seed)")
        let restarted = RiskEngine()
        restarted.rebuild(snapshot: decoded, then: trades.suffix(from: 1234))
        #expect(restarted.snapshot() == all.snapshot(), "seed \(seed)")
        #expect(RiskEngine.Snapshot(bytes: Array(bytes.dropLast())) == nil, "seed \(seed)")
    }
}
