import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds

/// Runs a source to its end into a collecting sink.
func collect(_ source: EventSource) throws -> CollectingSink {
    let sink = CollectingSink()
    try source.run(into: sink, stop: StopSignal())
    return sink
}

func counter(_ source: EventSource, _ name: String) -> UInt64 {
    source.counters().first { $0.name == name }?.value ?? 0
}

@Suite struct TardisTests {
    /// Every data row's two raw microsecond fields, read independently of the source.
    func rawTimes(_ path: String) -> [(Int64, Int64)] {
        let lines = String(decoding: Fixture.bytes(path), as: UTF8.self).split(separator: "\n").dropFirst()
        return lines.map { l in let f = l.split(separator: ","); return (Int64(f[2])!, Int64(f[3])!) }
    }

    @Test func tradesKeepBothTimesExactToTheMicrosecond() throws {
        let source = TardisCSVSource(path: Fixture.tardisTrades, kind: .trades)
        let sink = try collect(source)
        #expect(sink.events.count == 9_999)
        #expect(counter(source, "rows") == 9_999 && counter(source, "errors") == 0)
        for (e, (ts, local)) in zip(sink.events, rawTimes(Fixture.tardisTrades)) {
            #expect(e.eventTime.rawValue == ts * 1_000)
            #expect(e.knownTime.rawValue == local * 1_000)
        }
        let first = sink.events[0]
        #expect(sink.subjects.text(first.subjectID) == "MD.BINANCE-FUTURES.BTCUSDT.TRADE")
        #expect(first.eventTime == Nanos(1_582_329_602_111_000_000))
        #expect(first.knownTime == Nanos(1_582_329_602_418_379_000))
        #expect(first.trade == Trade(price: try Price(parsing: "9682"), size: try Quantity(parsing: "0.132"), side: .buy, tradeID: 42_377_944))
        let last = sink.events.last!
        #expect(last.trade == Trade(price: try Price(parsing: "9666.84"), size: try Quantity(parsing: "0.07"), side: .sell, tradeID: 42_387_942))
        #expect(last.knownTime == Nanos(1_582_337_147_852_384_000))
    }

    @Test func quotesKeepBothTimesAndAreNeverCrossed() throws {
        let sink = try collect(TardisCSVSource(path: Fixture.tardisQuotes, kind: .quotes))
        #expect(sink.events.count == 9_999)
        for (e, (ts, local)) in zip(sink.events, rawTimes(Fixture.tardisQuotes)) {
            #expect(e.eventTime.rawValue == ts * 1_000 && e.knownTime.rawValue == local * 1_000)
            #expect(e.quote.bid < e.quote.ask)
        }
        #expect(sink.subjects.text(sink.events[0].subjectID) == "MD.BINANCE-FUTURES.BTCUSDT.QUOTE")
        #expect(sink.events[0].quote == Quote(bid: try Price(parsing: "9681.92"), bidSize: try Quantity(parsing: "0.67"),
                                              ask: try Price(parsing: "9682"), askSize: try Quantity(parsing: "0.84")))
        #expect(sink.events.last!.quote.askSize == (try Quantity(parsing: "0.031")))
    }

    @Test func badRowsNameLineAndFieldAndCanBeSkipped() throws {
        let text = """
        exchange,symbol,timestamp,local_timestamp,id,side,price,amount
        binance-futures,BTCUSDT,1582329602111000,1582329602418379,1,buy,9682,0.132
        binance-futures,BTCUSDT,158232960211x000,1582329602418379,2,buy,9682,0.132
        binance-futures,BTCUSDT,1582329602111000,1582329602418379,3,up,9682,0.132
        binance-futures,BTCUSDT,1582329602111000,1582329602418379,4,sell,9682.123456789,1

        """
        let path = Fixture.scratch("bad_trades.csv", Array(text.utf8))
        #expect(throws: CSVError(path: path, line: 3, field: "timestamp", reason: "'158232960211x000' is not an integer")) {
            try collect(TardisCSVSource(path: path, kind: .trades))
        }
        let skipping = TardisCSVSource(path: path, kind: .trades, options: FeedOptions(errorPolicy: .skip))
        let sink = try collect(skipping)
        #expect(sink.events.map { $0.trade.tradeID } == [1])
        #expect(counter(skipping, "errors") == 3 && counter(skipping, "rows") == 4)
        let missing = Fixture.scratch("no_id.csv", Array("exchange,symbol,timestamp,local_timestamp,side,price,amount\n".utf8))
        #expect(throws: CSVError.self) { try collect(TardisCSVSource(path: missing, kind: .trades)) }
    }
}

@Suite struct LOBSTERTests {
    @Test func messageRowsDecode() throws {
        let source = try LOBSTERSource(path: Fixture.lobsterMessages)
        #expect(source.symbol == "AAPL")
        let sink = try collect(source)
        #expect(counter(source, "rows") == 999 && counter(source, "errors") == 0)
        let trades = sink.events.filter { $0.kind == .trade }
        #expect(trades.count == 98 + 61)    // visible (4) and hidden (5) executions
        // Line 36: 34200.275016159, visible execution of order 5740544, 40 shares at 585.74, resting sell.
        let first = trades[0]
        #expect(sink.subjects.text(first.subjectID) == "MD.XNAS.AAPL.TRADE")
        #expect(first.trade == Trade(price: try Price(parsing: "585.74"), size: Quantity(units: 40, decimals: 0), side: .buy, tradeID: 36))
        #expect(first.eventTime == (try Nanos(parsing: "2012-06-21T13:30:00.275016159Z")))   // EDT: UTC-4
        for e in sink.events where e.kind == .quote {
            let q = e.quote
            if q.bidSize.e8 > 0 && q.askSize.e8 > 0 { #expect(q.bid < q.ask) }
        }
        #expect(sink.events.contains { $0.kind == .quote })
    }

    @Test func badRowIsTyped() throws {
        let path = Fixture.scratch("AAPL_2012-06-21_message_1.csv", Array("34200.1,1,5,10,5853300,1\n34200.2,9,5,10,5853300,1\n".utf8))
        #expect(throws: CSVError(path: path, line: 2, field: "event type", reason: "9 is not 1-7")) {
            try collect(try LOBSTERSource(path: path))
        }
        #expect(throws: FeedConfigError.self) { try LOBSTERSource(path: "/tmp/nodate.csv") }
    }
}

/// Trade ids the store can rely on: it takes the same (subject, event time, id) for a correction.
@Suite struct TradeIDTests {
    /// Fills without an id at one instant are distinct fills: id 0 ("no id"), never one shared hash.
    @Test func tardisFillsWithoutAnIdGetNoId() throws {
        let text = """
        exchange,symbol,timestamp,local_timestamp,id,side,price,amount
        binance-futures,BTCUSDT,1582329602111000,1582329602418379,,buy,9682,0.1
        binance-futures,BTCUSDT,1582329602111000,1582329602418379,,buy,9682,0.1
        binance-futures,BTCUSDT,1582329602111000,1582329602418380,,sell,9681,0.2
        binance-futures,BTCUSDT,1582329602111000,1582329602418381,abc,sell,9681,0.2

        """
        let sink = try collect(TardisCSVSource(path: Fixture.scratch("no_ids.csv", Array(text.utf8)), kind: .trades))
        #expect(sink.events.map { $0.trade.tradeID } == [0, 0, 0, TardisCSVSource.fnv1a("abc")])
    }

    /// Two runs of the simulator never reuse a trade id.
    @Test func simulatorTradeIdsDoNotRepeatAcrossRuns() throws {
        var options = MarketSimulator.Options()
        options.rate = 0
        options.limit = 5_000
        let first = try collect(MarketSimulator(options: options)).events.filter { $0.kind == .trade }.map(\.trade.tradeID)
        let second = try collect(MarketSimulator(options: options)).events.filter { $0.kind == .trade }.map(\.trade.tradeID)
        #expect(!first.isEmpty && !second.isEmpty)
        #expect(Set(first).isDisjoint(with: second))
    }
}
