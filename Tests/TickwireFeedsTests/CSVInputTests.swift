import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds

/// CRLF captures read like LF ones; negative sizes are refused naming line and field.
@Suite(.timeLimit(.minutes(5))) struct CSVInputTests {
    static func crlf(_ path: String, name: String) -> String {
        var out = [UInt8]()
        for b in Fixture.bytes(path) { if b == 10 { out.append(13) }; out.append(b) }
        return Fixture.scratch(name, out)
    }

    @Test func crlfGivesTheSameEventsAsLF() throws {
        let lobsterLF = try LOBSTERSource(path: Fixture.lobsterMessages)
        let lobster = try LOBSTERSource(path: Self.crlf(Fixture.lobsterMessages, name: "lobster_AAPL_2012-06-21_message_10_head.csv"))
        let expected = try collect(lobsterLF).events
        #expect(expected.count > 1)
        #expect(try collect(lobster).events == expected)
        #expect(counter(lobster, "rows") == counter(lobsterLF, "rows") && counter(lobster, "errors") == 0)
        for (path, kind) in [(Fixture.tardisTrades, TardisCSVSource.Kind.trades), (Fixture.tardisQuotes, .quotes)] {
            let lf = try collect(TardisCSVSource(path: path, kind: kind)).events
            let source = TardisCSVSource(path: Self.crlf(path, name: "crlf.csv"), kind: kind)
            #expect(try collect(source).events == lf)
            #expect(counter(source, "errors") == 0 && lf.count == 9_999)
        }
    }

    @Test func negativeTardisSizesAreRefusedNamingLineAndField() throws {
        let text = """
        exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount
        binance-futures,BTCUSDT,1582329602111000,1582329602418379,0.84,9682,9681.92,0.67
        binance-futures,BTCUSDT,1582329602112000,1582329602418380,-0.84,9682,9681.92,0.67
        binance-futures,BTCUSDT,1582329602113000,1582329602418381,0.84,9682,9681.92,-1
        binance-futures,BTCUSDT,1582329602114000,1582329602418382,0,9682,9681.92,0

        """
        let path = Fixture.scratch("negative_quotes.csv", Array(text.utf8))
        #expect(throws: CSVError(path: path, line: 3, field: "ask_amount", reason: "'-0.84' is negative; a size is 0 or more")) {
            try collect(TardisCSVSource(path: path, kind: .quotes))
        }
        let skipping = TardisCSVSource(path: path, kind: .quotes, options: FeedOptions(errorPolicy: .skip))
        let sink = try collect(skipping)
        #expect(sink.events.count == 2)
        #expect(counter(skipping, "errors") == 2 && counter(skipping, "rows") == 4)
        let summary = try #require(skipping.skipSummary)
        #expect(summary.hasSuffix("skipped 2 of 4 rows; first: \(path):3: field 'ask_amount': '-0.84' is negative; a size is 0 or more"))
        let trades = Fixture.scratch("negative_trades.csv", Array("""
        exchange,symbol,timestamp,local_timestamp,id,side,price,amount
        binance-futures,BTCUSDT,1582329602111000,1582329602418379,1,buy,9682,-0.132

        """.utf8))
        #expect(throws: CSVError(path: trades, line: 2, field: "amount", reason: "'-0.132' is negative; a size is 0 or more")) {
            try collect(TardisCSVSource(path: trades, kind: .trades))
        }
    }
}
