import Benchmark
import TickwireAlerts
import TickwireCore
import TickwireRisk

// The cost of the alert rules and of risk marking per market-data event, and of a risk check per trade, each
// beside a bare loop over the same events in the same run (the "ring without them" baseline).
//
// Run: cd Benchmarks && swift package benchmark --target RiskBenchmarks

/// A synthetic market: 200 symbols on 2 venues, a quote then a trade per step, prices walking a cent at a time
/// inside a one-cent spread, 1 µs apart. Trades print at the bid or the ask, so alerts are rare (as on a real
/// feed) and the cost measured is the rules' bookkeeping, not emitting.
struct Market {
    let table = SubjectTable()
    var events: [Event] = []

    init(count: Int, symbols: Int = 200) {
        let venues = ["XNAS", "ARCX"]
        var trades: [SubjectID] = [], quotes: [SubjectID] = []
        for s in 0..<symbols {
            for v in venues {
                trades.append(table.intern(text: "MD.\(v).S\(s).TRADE"))
                quotes.append(table.intern(text: "MD.\(v).S\(s).QUOTE"))
            }
        }
        var mids = [Int64](repeating: 100 * FixedPoint.scale, count: trades.count)
        var rng: UInt64 = 0x9E37_79B9_7F4A_7C15
        events.reserveCapacity(count)
        var t: Int64 = 1_700_000_000_000_000_000
        while events.count < count {
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let i = Int(rng >> 33) % trades.count
            mids[i] += (rng & 1 == 0 ? 1 : -1) * 1_000_000
            let bid = mids[i], ask = mids[i] + 1_000_000
            t += 1_000
            events.append(.quote(quotes[i], bid: Price(e8: bid), bidSize: Quantity(e8: 100 * FixedPoint.scale),
                                 ask: Price(e8: ask), askSize: Quantity(e8: 100 * FixedPoint.scale),
                                 eventTime: Nanos(t), knownTime: Nanos(t + 500)))
            t += 1_000
            events.append(.trade(trades[i], price: Price(e8: (rng >> 40) & 1 == 0 ? bid : ask),
                                 size: Quantity(e8: Int64((rng >> 20) % 500 + 1) * FixedPoint.scale), side: .buy,
                                 tradeID: UInt64(events.count), eventTime: Nanos(t), knownTime: Nanos(t + 500)))
        }
    }
}

/// The market replayed lap after lap, times moving on by the market's span each lap so that windows and
/// buckets see time advance as on a live feed. One per benchmark. Its cursor is a struct so that taking an
/// event costs no dynamic exclusivity check (which a class's `var` would).
final class Feed: @unchecked Sendable {
    struct Cursor {
        let events: [Event]
        let span: Int64
        var index = 0
        var shift: Int64 = 0

        @inline(__always)
        mutating func next() -> Event {
            var e = events[index]
            e.eventTime.rawValue &+= shift
            e.knownTime.rawValue &+= shift
            index += 1
            if index == events.count { index = 0; shift &+= span }
            return e
        }

        /// Copies the next `batch.count` events into `batch`, as a ring consumer finds a run of slots.
        @inline(__always)
        mutating func fill(_ batch: UnsafeMutableBufferPointer<Event>) {
            for i in batch.indices { batch[i] = next() }
        }
    }

    var cursor: Cursor
    let batch = UnsafeMutableBufferPointer<Event>.allocate(capacity: 256)

    init(_ market: Market) {
        let events = market.events
        cursor = Cursor(events: events, span: events.last!.eventTime.rawValue - events.first!.eventTime.rawValue + 1_000)
        batch.initialize(repeating: .empty)
    }
}

let market = Market(count: 1 << 20)
/// The same flow over 10 symbols (40 subjects): every rule's state stays in L1/L2, as for a feed's hot names.
let hotMarket = Market(count: 1 << 20, symbols: 10)

let benchmarks: @Sendable () -> Void = {
    let config = Benchmark.Configuration(metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal], scalingFactor: .mega,
                                         maxDuration: .seconds(3), maxIterations: 20)

    // The baseline, then every rule on every subject (the embedded defaults, cooldowns and all) over the same
    // events: over 800 subjects, and over the hot set of 40.
    func bareLoopAndAllRules(_ market: Market, suffix: String) {
        // The baseline: take every event from the feed once, as a consumer that does nothing with it would.
        let bare = Feed(market)
        Benchmark("Alerts.baseline.bareLoop\(suffix)", configuration: config) { benchmark in
            var sum: Int64 = 0
            for _ in benchmark.scaledIterations { sum &+= bare.cursor.next().a }
            blackHole(sum)
        }
        let feed = Feed(market)
        let engine = AlertEngine(rules: AlertRule.defaults, subjects: market.table)
        // Each engine sees one lap before it is measured, so every subject is bound and every window full.
        for _ in market.events { engine.process(feed.cursor.next()) { _ in } }
        Benchmark("Alerts.allRules.perEvent\(suffix)", configuration: config) { benchmark in
            var alerts = 0
            for _ in benchmark.scaledIterations { engine.process(feed.cursor.next()) { _ in alerts += 1 } }
            blackHole(alerts)
        }
    }
    bareLoopAndAllRules(market, suffix: "")
    bareLoopAndAllRules(hotMarket, suffix: ".hot40")

    // Risk marking on the market-data thread: a QUOTE mid or TRADE price into the symbol's atomic.
    let markFeed = Feed(market)
    let marker = RiskEngine().makeMarker(subjects: market.table)
    for _ in market.events { marker.mark(markFeed.cursor.next()) }
    Benchmark("Risk.mark.perEvent", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations { marker.mark(markFeed.cursor.next()) }
    }

    // Alerts and marking together, as one consumer running both.
    let bothFeed = Feed(market)
    let engine2 = AlertEngine(rules: AlertRule.defaults, subjects: market.table)
    let marker2 = RiskEngine().makeMarker(subjects: market.table)
    for _ in market.events { let e = bothFeed.cursor.next(); engine2.process(e) { _ in }; marker2.mark(e) }
    Benchmark("Alerts.allRulesAndRiskMark.perEvent", configuration: config) { benchmark in
        var alerts = 0
        for _ in benchmark.scaledIterations {
            let e = bothFeed.cursor.next()
            engine2.process(e) { _ in alerts += 1 }
            marker2.mark(e)
        }
        blackHole(alerts)
    }

    // The same three in batches of 256 events, as a ring consumer reads a run of slots: the baseline copies the
    // run out of the feed and sums it; the others copy it and run the rules (and marks) over it.
    let batchConfig = Benchmark.Configuration(metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal], scalingFactor: .kilo,
                                              maxDuration: .seconds(3), maxIterations: 20)
    let bareBatch = Feed(market)
    Benchmark("Alerts.baseline.bareLoop.batch256", configuration: batchConfig) { benchmark in
        var sum: Int64 = 0
        for _ in benchmark.scaledIterations {
            bareBatch.cursor.fill(bareBatch.batch)
            for e in bareBatch.batch { sum &+= e.a }
        }
        blackHole(sum)
    }
    let alertBatch = Feed(market)
    let engine3 = AlertEngine(rules: AlertRule.defaults, subjects: market.table)
    let marker3 = RiskEngine().makeMarker(subjects: market.table)
    for _ in market.events { let e = alertBatch.cursor.next(); engine3.process(e) { _ in }; marker3.mark(e) }
    Benchmark("Alerts.allRulesAndRiskMark.batch256", configuration: batchConfig) { benchmark in
        var alerts = 0
        for _ in benchmark.scaledIterations {
            alertBatch.cursor.fill(alertBatch.batch)
            let run = UnsafeBufferPointer(alertBatch.batch)
            engine3.process(run) { _ in alerts += 1 }
            marker3.mark(run)
        }
        blackHole(alerts)
    }

    // A pre-trade check per trade for a desk holding 50 symbols, against the marks of a live market, and a
    // check-and-apply (`submit`, what the trade service calls before journaling): with no limit, and with the
    // embedded default limits (`.limits`: the desk-wide gross notional and loss then look at all 50 positions).
    let tradeConfig = Benchmark.Configuration(metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal], scalingFactor: .kilo,
                                              maxDuration: .seconds(3), maxIterations: 50)
    func desk(_ limits: RiskLimits) -> (RiskEngine, [RiskTrade]) {
        let risk = RiskEngine(config: RiskConfig(default: limits))
        var trades: [RiskTrade] = []
        for s in 0..<50 {
            risk.mark(symbol: "S\(s)", price: Price(e8: 100 * FixedPoint.scale))
            for side in [Side.buy, .sell] {
                trades.append(RiskTrade(desk: "DESK7", symbol: "S\(s)", side: side, quantity: Quantity(e8: 10 * FixedPoint.scale),
                                        price: Price(e8: 100 * FixedPoint.scale)))
            }
        }
        for t in trades { risk.apply(t) }   // 50 (flat) positions held
        risk.apply(trades[0])
        return (risk, trades)
    }
    for (suffix, limits) in [("", RiskLimits.unlimited), (".limits", .embeddedDefault)] {
        Benchmark("Risk.check.perTrade\(suffix)", configuration: tradeConfig) { benchmark in
            let (risk, trades) = desk(limits)
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations { blackHole(risk.check(trades[i % trades.count]) == nil) }
        }
        Benchmark("Risk.submit.perTrade\(suffix)", configuration: tradeConfig) { benchmark in
            let (risk, trades) = desk(limits)
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations { blackHole(risk.submit(trades[i % trades.count]) == nil) }
        }
    }
}
