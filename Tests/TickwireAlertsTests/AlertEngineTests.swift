import Testing
import TickwireAlerts
import TickwireCore

/// Drives an engine with scripted events and keeps what it emits.
final class Harness {
    let table = SubjectTable()
    let engine: AlertEngine
    var alerts: [Event] = []

    init(_ rules: [AlertRule]) { engine = AlertEngine(rules: rules, subjects: table) }

    func id(_ subject: String) -> SubjectID { table.intern(text: subject) }

    /// Processes one event; returns the alerts it raised.
    @discardableResult
    func send(_ e: Event) -> [Event] {
        var out: [Event] = []
        engine.process(e) { out.append($0) }
        alerts += out
        return out
    }

    @discardableResult
    func trade(_ subject: String = "MD.XNAS.AAPL.TRADE", ms: Int64, _ price: String, size: String = "100",
               known: Int64? = nil) -> [Event] {
        send(.trade(id(subject), price: try! Price(parsing: price), size: try! Quantity(parsing: size), side: .buy,
                    tradeID: 0, eventTime: Nanos(ms * 1_000_000), knownTime: Nanos((known ?? ms) * 1_000_000 + 7)))
    }

    @discardableResult
    func quote(_ subject: String = "MD.XNAS.AAPL.QUOTE", ms: Int64, bid: String, ask: String,
               bidSize: String = "100", askSize: String = "100", knownMs: Int64? = nil) -> [Event] {
        send(.quote(id(subject), bid: try! Price(parsing: bid), bidSize: try! Quantity(parsing: bidSize),
                    ask: try! Price(parsing: ask), askSize: try! Quantity(parsing: askSize),
                    eventTime: Nanos(ms * 1_000_000), knownTime: Nanos((knownMs ?? ms) * 1_000_000)))
    }

    @discardableResult
    func tick(ms: Int64) -> [Event] {
        var out: [Event] = []
        engine.tick(now: Nanos(ms * 1_000_000)) { out.append($0) }
        alerts += out
        return out
    }

    func subject(_ e: Event) -> String { table.text(e.subjectID) }
}

func e8(_ s: String) -> Int64 { try! FixedPoint.parseE8(s) }
let ms: Int64 = 1_000_000
let trades = try! SubjectPattern("MD.*.*.TRADE")
let quotes = try! SubjectPattern("MD.*.*.QUOTE")

@Suite(.timeLimit(.minutes(5))) struct PriceJumpTests {
    let h = Harness([AlertRule(.priceJump(bps: 100, windowNanos: 1_000 * ms), subjects: trades, cooldownNanos: 0)])

    @Test func firesAtExactlyTheThresholdWithinTheWindowAndNotBelowIt() {
        #expect(h.trade(ms: 0, "100").isEmpty)
        #expect(h.trade(ms: 500, "100.99").isEmpty)          // 99 bps
        let up = h.trade(ms: 900, "101", known: 901)          // 100 bps from the window's low
        #expect(up.count == 1)
        let a = up[0]
        #expect(h.subject(a) == "ALERT.PRICE_JUMP.AAPL")
        #expect(a.kind == .alert)
        #expect(a.alertBody == Alert(rule: AlertCode.priceJump.rawValue, value: e8("101"), threshold: e8("101"), reference: e8("100")))
        #expect(a.eventTime == Nanos(900 * ms))
        #expect(a.knownTime == Nanos(901 * ms + 7))
    }

    @Test func downwardJumpFromTheWindowHigh() {
        h.trade(ms: 0, "102")
        let down = h.trade(ms: 100, "100.97")
        #expect(down.map(\.alertBody) == [Alert(rule: 1, value: e8("100.97"), threshold: e8("100.98"), reference: e8("102"))])
        #expect(h.trade(ms: 200, "100.98").count == 1)   // exactly 100 bps below 102 (cooldown 0)
        #expect(h.trade(ms: 300, "100.99").isEmpty)      // 99.0196 bps
    }

    @Test func pricesLeaveTheWindowAfterWMilliseconds() {
        h.trade(ms: 0, "100")
        #expect(h.trade(ms: 1_000, "101").count == 1)   // the trade at 0 is exactly W old: still inside
        h.alerts.removeAll()
        h.trade(ms: 5_000, "100")
        #expect(h.trade(ms: 6_001, "101").isEmpty)      // 1,001 ms: gone
        #expect(h.trade(ms: 6_500, "102.01").count == 1) // 101 (at 6,001) is in the window: exactly 100 bps
    }

    @Test func eachSubjectHasItsOwnWindow() {
        h.trade("MD.XNAS.AAPL.TRADE", ms: 0, "100")
        #expect(h.trade("MD.XNAS.MSFT.TRADE", ms: 10, "200").isEmpty)
        #expect(h.trade("MD.ARCX.AAPL.TRADE", ms: 20, "101").isEmpty)
        let a = h.trade("MD.XNAS.MSFT.TRADE", ms: 30, "203")
        #expect(a.map { h.subject($0) } == ["ALERT.PRICE_JUMP.MSFT"])
    }

    @Test func monotonicWindowSurvivesALongRisingRun() {
        // 10,000 rising trades, one cent apart, 0.1 ms apart: the min deque grows past its first buffer.
        var fired = 0
        for i in 0..<10_000 {
            let price = Price(e8: 100 * FixedPoint.scale + Int64(i) * 1_000_000)
            fired += h.send(.trade(h.id("MD.XNAS.AAPL.TRADE"), price: price, size: Quantity(e8: 1), side: .buy, tradeID: 0,
                                   eventTime: Nanos(Int64(i) * 100_000), knownTime: Nanos(Int64(i) * 100_000))).count
        }
        // A 1 s window holds 10,000 trades; 1% of ~100 is 100 cents: the first alert at i = 100, then every trade.
        #expect(fired == 10_000 - 100)
        #expect(h.alerts.first?.alertBody.reference == 100 * FixedPoint.scale)
    }
}

@Suite(.timeLimit(.minutes(5))) struct CooldownTests {
    @Test func alertsWithinTheCooldownAreSuppressedAndCounted() {
        let h = Harness([AlertRule(.priceJump(bps: 100, windowNanos: 1_000 * ms), subjects: trades, cooldownNanos: 500 * ms)])
        h.trade(ms: 0, "100")
        #expect(h.trade(ms: 10, "102").count == 1)
        #expect(h.trade(ms: 20, "103").isEmpty)
        #expect(h.trade(ms: 509, "104").isEmpty)
        #expect(h.trade(ms: 510, "105").count == 1)     // 500 ms after the last alert
        #expect(h.engine.counters.fired(.priceJump) == 2)
        #expect(h.engine.counters.suppressed(.priceJump) == 2)
    }
}

@Suite(.timeLimit(.minutes(5))) struct CrossedMarketTests {
    @Test func saysLockedOrCrossedOnEnteringEachState() {
        let h = Harness([AlertRule(.crossedMarket(alertOnLocked: true), subjects: quotes, cooldownNanos: 0)])
        #expect(h.quote(ms: 1, bid: "100", ask: "101").isEmpty)
        let locked = h.quote(ms: 2, bid: "101", ask: "101")
        #expect(locked.map { h.subject($0) } == ["ALERT.LOCKED.AAPL"])
        #expect(locked[0].alertBody == Alert(rule: AlertCode.locked.rawValue, value: e8("101"), threshold: e8("101"), reference: 0))
        #expect(h.quote(ms: 3, bid: "101", ask: "101").isEmpty)      // still locked
        let crossed = h.quote(ms: 4, bid: "101.02", ask: "101")
        #expect(crossed.map { h.subject($0) } == ["ALERT.CROSSED.AAPL"])
        #expect(crossed[0].alertBody == Alert(rule: AlertCode.crossed.rawValue, value: e8("101.02"), threshold: e8("101"), reference: e8("0.02")))
        #expect(crossed[0].eventTime == Nanos(4 * ms))
        #expect(h.quote(ms: 5, bid: "101.03", ask: "101").isEmpty)    // still crossed
        #expect(h.quote(ms: 6, bid: "100", ask: "101").isEmpty)       // normal again
        #expect(h.quote(ms: 7, bid: "102", ask: "101").count == 1)    // crossed again
        #expect(h.engine.counters.fired(.crossed) == 2)
        #expect(h.engine.counters.fired(.locked) == 1)
    }

    @Test func oneSidedQuotesAndLockedWhenNotAskedForDoNotFire() {
        let h = Harness([AlertRule(.crossedMarket(alertOnLocked: false), subjects: quotes, cooldownNanos: 0)])
        #expect(h.quote(ms: 1, bid: "101", ask: "101").isEmpty)
        #expect(h.quote(ms: 2, bid: "102", ask: "101", bidSize: "0").isEmpty)
        #expect(h.quote(ms: 3, bid: "102", ask: "0").isEmpty)
        #expect(h.quote(ms: 4, bid: "102", ask: "101").count == 1)
    }

    @Test func tradesAndOtherSubjectsAreNotRead() {
        let h = Harness([AlertRule(.crossedMarket(alertOnLocked: true), subjects: try! SubjectPattern("MD.XNAS.>"), cooldownNanos: 0)])
        #expect(h.quote("MD.ARCX.AAPL.QUOTE", ms: 1, bid: "102", ask: "101").isEmpty)
        #expect(h.trade("MD.XNAS.AAPL.TRADE", ms: 2, "100").isEmpty)
        // An ALERT (or any non-MD subject) is never bound, even under a catch-all pattern.
        let all = Harness([AlertRule(.crossedMarket(alertOnLocked: true), subjects: try! SubjectPattern(">"), cooldownNanos: 0)])
        #expect(all.quote("ALERT.X.AAPL.QUOTE", ms: 1, bid: "102", ask: "101").isEmpty)
        #expect(all.quote("MD.XNAS.AAPL.QUOTE", ms: 1, bid: "102", ask: "101").count == 1)
    }
}

@Suite(.timeLimit(.minutes(5))) struct VolumeSpikeTests {
    let h = Harness([AlertRule(.volumeSpike(bucketNanos: 1_000 * ms, factorE8: 3 * FixedPoint.scale, minBuckets: 3,
                                            lookbackBuckets: 4), subjects: trades, cooldownNanos: 0)])

    @Test func firesOnceWhenTheBucketReachesFactorTimesTheMean() {
        h.trade(ms: 100, "10", size: "100")
        h.trade(ms: 1_100, "10", size: "5000")      // only one bucket of history: no alert, whatever the size
        #expect(h.alerts.isEmpty)
        h.trade(ms: 2_100, "10", size: "300")       // buckets so far: 100, 5000
        h.trade(ms: 3_100, "10", size: "500")       // history 100, 5000, 300: mean 1800, threshold 5400
        #expect(h.trade(ms: 3_200, "10", size: "4899").isEmpty)   // 5399
        let a = h.trade(ms: 3_999, "10", size: "1")                // 5400 = 3 × 1800
        #expect(a.map { h.subject($0) } == ["ALERT.VOLUME_SPIKE.AAPL"])
        #expect(a[0].alertBody == Alert(rule: AlertCode.volumeSpike.rawValue, value: e8("5400"), threshold: e8("5400"), reference: e8("1800")))
        #expect(h.trade(ms: 3_999, "10", size: "100000").isEmpty)  // once per bucket
    }

    @Test func theMeanRollsOverTheLookbackAndEmptyBucketsCountAsZero() {
        for (i, v) in ["1000", "10", "10", "10"].enumerated() { h.trade(ms: Int64(i) * 1_000, "10", size: v) }
        // Bucket 4: history 1000, 10, 10, 10 (mean 257.5): 700 is under 772.5.
        #expect(h.trade(ms: 4_000, "10", size: "700").isEmpty)
        // Bucket 5: history 10, 10, 10, 700 (the 1000 rolled out): mean 182.5, threshold 547.5.
        #expect(h.trade(ms: 5_000, "10", size: "547.5").count == 1)
        // Bucket 20 after 14 empty ones: history all zeros, no baseline, no alert.
        #expect(h.trade(ms: 20_000, "10", size: "1000000").isEmpty)
        h.trade(ms: 21_000, "10", size: "1")
        h.trade(ms: 22_000, "10", size: "1")
        // Bucket 23: history 0, 1000000, 1, 1: mean 250000.5, threshold 750001.5.
        #expect(h.trade(ms: 23_000, "10", size: "750001.49999999").isEmpty)
        let a = h.trade(ms: 23_001, "10", size: "0.00000001")
        #expect(a.map(\.alertBody) == [Alert(rule: 4, value: e8("750001.5"), threshold: e8("750001.5"), reference: e8("250000.5"))])
        #expect(h.alerts.count == 2)
    }
}

@Suite(.timeLimit(.minutes(5))) struct StaleQuoteTests {
    @Test func firesOnceWhenNoQuoteArrivesForMoreThanTheWindowAndRearmsOnTheNextQuote() {
        let h = Harness([AlertRule(.staleQuote(windowNanos: 1_000 * ms), subjects: quotes, cooldownNanos: 0)])
        #expect(h.tick(ms: 10_000).isEmpty)                   // nothing seen yet: nothing to be stale
        h.quote(ms: 900, bid: "1", ask: "2", knownMs: 1_000)
        #expect(h.tick(ms: 1_500).isEmpty)
        #expect(h.tick(ms: 2_000).isEmpty)                    // exactly W old: not stale yet
        var stale: [Event] = []
        h.engine.tick(now: Nanos(2_000 * ms + 1)) { stale.append($0) }
        #expect(stale.map { h.subject($0) } == ["ALERT.STALE_QUOTE.AAPL"])
        #expect(stale[0].alertBody == Alert(rule: AlertCode.staleQuote.rawValue, value: 100_000_000_100,
                                            threshold: e8("1000"), reference: 900 * ms))
        #expect(stale[0].eventTime == Nanos(2_000 * ms + 1))
        #expect(h.tick(ms: 9_000).isEmpty)                    // once per silence
        h.quote(ms: 9_500, bid: "1", ask: "2")
        #expect(h.tick(ms: 10_400).isEmpty)
        #expect(h.tick(ms: 10_501).count == 1)
    }

    @Test func theCooldownAppliesAcrossSilences() {
        let h = Harness([AlertRule(.staleQuote(windowNanos: 100 * ms), subjects: quotes, cooldownNanos: 10_000 * ms)])
        h.quote(ms: 0, bid: "1", ask: "2")
        #expect(h.tick(ms: 200).count == 1)
        h.quote(ms: 300, bid: "1", ask: "2")
        #expect(h.tick(ms: 500).isEmpty)
        #expect(h.engine.counters.suppressed(.staleQuote) == 1)
    }
}

@Suite(.timeLimit(.minutes(5))) struct TradeOutsideQuoteTests {
    @Test func firesOnTradesBelowTheBidOrAboveTheAskOfTheSameVenueAndSymbol() {
        let h = Harness([AlertRule(.tradeOutsideQuote(toleranceBps: 0), subjects: trades, cooldownNanos: 0)])
        #expect(h.trade(ms: 1, "50").isEmpty)                     // no quote yet
        h.quote(ms: 2, bid: "100", ask: "101")
        #expect(h.trade(ms: 3, "100").isEmpty)
        #expect(h.trade(ms: 4, "101").isEmpty)
        let below = h.trade(ms: 5, "99.99")
        #expect(below.map { h.subject($0) } == ["ALERT.TRADE_OUTSIDE_QUOTE.AAPL"])
        #expect(below[0].alertBody == Alert(rule: AlertCode.tradeOutsideQuote.rawValue, value: e8("99.99"), threshold: e8("100"), reference: e8("100")))
        let above = h.trade(ms: 6, "101.01")
        #expect(above[0].alertBody == Alert(rule: 6, value: e8("101.01"), threshold: e8("101"), reference: e8("101")))
        #expect(h.trade("MD.ARCX.AAPL.TRADE", ms: 7, "90").isEmpty)   // ARCX has no quote of its own
        h.quote(ms: 8, bid: "100", ask: "101", askSize: "0")          // the ask side is gone
        #expect(h.trade(ms: 9, "150").isEmpty)
    }

    @Test func toleranceWidensTheQuote() {
        let h = Harness([AlertRule(.tradeOutsideQuote(toleranceBps: 10), subjects: trades, cooldownNanos: 0)])
        h.quote(ms: 1, bid: "100", ask: "101")
        #expect(h.trade(ms: 2, "99.90").isEmpty)
        #expect(h.trade(ms: 3, "101.101").isEmpty)
        #expect(h.trade(ms: 4, "99.89").map(\.alertBody.threshold) == [e8("99.90")])
        #expect(h.trade(ms: 5, "101.102").map(\.alertBody.threshold) == [e8("101.101")])
    }

    @Test func thePatternNamesTheTradeSubjectsAndTheirQuotesFollow() {
        let h = Harness([AlertRule(.tradeOutsideQuote(toleranceBps: 0), subjects: try! SubjectPattern("MD.XNAS.AAPL.TRADE"), cooldownNanos: 0)])
        h.quote(ms: 1, bid: "100", ask: "101")
        h.quote("MD.XNAS.MSFT.QUOTE", ms: 1, bid: "100", ask: "101")
        #expect(h.trade(ms: 2, "99").count == 1)
        #expect(h.trade("MD.XNAS.MSFT.TRADE", ms: 2, "99").isEmpty)
    }
}

@Suite(.timeLimit(.minutes(5))) struct AllRulesTests {
    @Test func oneEventRaisesEveryRuleThatAppliesInRuleOrder() {
        let h = Harness([
            AlertRule(.tradeOutsideQuote(toleranceBps: 0), subjects: trades, cooldownNanos: 0),
            AlertRule(.priceJump(bps: 100, windowNanos: 1_000 * ms), subjects: trades, cooldownNanos: 0),
            AlertRule(.crossedMarket(alertOnLocked: true), subjects: quotes, cooldownNanos: 0),
        ])
        h.quote(ms: 0, bid: "100", ask: "100.5")
        h.trade(ms: 1, "100.2")
        let both = h.trade(ms: 2, "102")
        #expect(both.map { h.subject($0) } == ["ALERT.TRADE_OUTSIDE_QUOTE.AAPL", "ALERT.PRICE_JUMP.AAPL"])
    }
}

@Suite(.timeLimit(.minutes(5))) struct BatchTests {
    @Test func aBatchRaisesWhatTheSameEventsOneByOneRaise() {
        let rules = AlertRule.defaults
        let one = Harness(rules), batch = Harness(rules)
        var events: [Event] = []
        for (i, p) in ["100", "100.5", "99", "101", "103"].enumerated() {
            events.append(.quote(one.id("MD.XNAS.AAPL.QUOTE"), bid: try! Price(parsing: p), bidSize: Quantity(e8: 1),
                                 ask: Price(e8: try! Price(parsing: p).e8 + 1_000_000), askSize: Quantity(e8: 1),
                                 eventTime: Nanos(Int64(i) * 10 * ms), knownTime: Nanos(Int64(i) * 10 * ms)))
            events.append(.trade(one.id("MD.XNAS.AAPL.TRADE"), price: try! Price(parsing: p), size: Quantity(e8: 100), side: .buy,
                                 tradeID: UInt64(i), eventTime: Nanos(Int64(i) * 10 * ms + 1), knownTime: Nanos(Int64(i) * 10 * ms + 1)))
        }
        _ = batch.id("MD.XNAS.AAPL.QUOTE"); _ = batch.id("MD.XNAS.AAPL.TRADE")
        for e in events { one.send(e) }
        events.withUnsafeBufferPointer { run in batch.engine.process(run) { batch.alerts.append($0) } }
        #expect(!one.alerts.isEmpty)
        #expect(batch.alerts == one.alerts)
    }
}
