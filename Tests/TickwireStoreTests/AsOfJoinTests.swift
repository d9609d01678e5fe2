import Testing
import TickwireCore
@testable import TickwireStore

@Suite struct AsOfJoinTests {
    let ev = Events()

    /// Quotes at 10, 20 (corrected at 25: bid 201), 30; a late quote at 15 known at 100; trades at 5, 15, 20, 35.
    func store() throws -> String {
        let dir = scratchDirectory()
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(10), known: t(10), bid: 100, ask: 101),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(20), known: t(20), bid: 200, ask: 202),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(30), known: t(30), bid: 300, ask: 303),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(15), known: t(100), bid: 150, ask: 151),
            ev.quote("MD.XNAS.MSFT.QUOTE", at: t(1), known: t(1), bid: 7, ask: 8),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(5), known: t(5), price: 1, id: 1),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(15), known: t(15), price: 2, id: 2),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(20), known: t(20), price: 3, id: 3),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(35), known: t(35), price: 4, id: 4),
        ], to: dir)
        return dir
    }

    func join(_ dir: String, _ direction: AsOfDirection = .backward, strict: Bool = false, tolerance: Double? = nil,
              asOf: Nanos? = nil, from: Nanos = t(0), to: Nanos = t(1000), trades: String = "MD.*.*.TRADE") throws -> [Int64?] {
        let j = try AsOfJoin(trades: SubjectPattern(trades), quotes: SubjectPattern("MD.*.*.QUOTE"), from: from, to: to,
                             asOf: asOf, direction: direction, strict: strict, tolerance: tolerance.map { Int64($0 * 1e9) })
        var bids = [Int64?]()
        try StoreReader(directory: dir).asOfJoin(j) { batch in
            for i in 0..<batch.count { bids.append(batch.row(i).quote.map { $0.bid.e8 / 1_000_000 }) }
        }
        return bids
    }

    @Test func backwardTakesThePrevailingQuoteAsKnownAtK() throws {
        let dir = try store(); defer { cleanUp(dir) }
        #expect(try join(dir, asOf: t(50)) == [nil, 100, 200, 300])
        #expect(try join(dir) == [nil, 150, 200, 300])               // the late quote at 15 is known now
        #expect(try join(dir, strict: true, asOf: t(50)) == [nil, 100, 100, 300])
        #expect(try join(dir, asOf: t(25)) == [nil, 100, 200])      // the trade at 35 is not yet known
    }

    /// A pattern wider than trades (`MD.>`) joins the trades it matches, never its quotes as if they were trades.
    @Test func onlyTradesAreJoinedWhateverThePattern() throws {
        let dir = try store(); defer { cleanUp(dir) }
        #expect(try join(dir, asOf: t(50), trades: "MD.>") == [nil, 100, 200, 300])
        #expect(try join(dir, asOf: t(50), trades: ">") == [nil, 100, 200, 300])
    }

    @Test func forwardNearestAndTolerance() throws {
        let dir = try store(); defer { cleanUp(dir) }
        #expect(try join(dir, .forward, asOf: t(50)) == [100, 200, 200, nil])
        #expect(try join(dir, .forward, strict: true, asOf: t(50)) == [100, 200, 300, nil])
        #expect(try join(dir, .nearest, asOf: t(50)) == [100, 100, 200, 300])   // 15 is equidistant: backward wins
        #expect(try join(dir, .nearest, strict: true, asOf: t(50)) == [100, 100, 100, 300])
        #expect(try join(dir, tolerance: 4, asOf: t(50)) == [nil, nil, 200, nil])
        #expect(try join(dir, .nearest, tolerance: 5, asOf: t(50)) == [100, 100, 200, 300])
    }

    @Test func thePrevailingQuoteMayComeFromBeforeTheWindowOrAnEarlierDay() throws {
        let dir = try store(); defer { cleanUp(dir) }
        #expect(try join(dir, from: t(12), to: t(1000)) == [150, 200, 300])
        try ev.write([ev.trade("MD.XNAS.AAPL.TRADE", at: t(86_400), known: t(86_400), price: 5, id: 5)], to: dir)
        #expect(try join(dir, from: t(86_000), to: t(90_000)) == [300])
        #expect(try join(dir, tolerance: 3600, from: t(86_000), to: t(90_000)) == [nil])
    }

    @Test func aBustedTradeIsNotJoined() throws {
        let dir = try store(); defer { cleanUp(dir) }
        try ev.write([ev.bust("MD.XNAS.AAPL.BUST", at: t(40), known: t(40), id: 2)], to: dir)
        #expect(try join(dir, asOf: t(39)) == [nil, 100, 200, 300])
        #expect(try join(dir, asOf: t(41)) == [nil, 200, 300])
    }

    @Test func rowsRenderAsCSVAndJSON() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let j = try AsOfJoin(trades: SubjectPattern("MD.XNAS.AAPL.TRADE"), quotes: SubjectPattern(">"), from: t(0), to: t(16), asOf: t(50))
        var csv = [UInt8](), json = [UInt8]()
        try StoreReader(directory: dir).asOfJoin(j) { b in
            for i in 0..<b.count {
                b.row(i).appendCSV(to: &csv); csv.append(10)
                b.row(i).appendJSON(to: &json); json.append(10)
            }
        }
        let e5 = t(5).rawValue, e10 = t(10).rawValue, e15 = t(15).rawValue
        #expect(String(decoding: csv, as: UTF8.self) == """
            MD.XNAS.AAPL.TRADE,\(e5),\(e5),0.01,100,buy,,,,,
            MD.XNAS.AAPL.TRADE,\(e15),\(e15),0.02,100,buy,\(e10),1,500,1.01,300

            """)
        #expect(String(decoding: json, as: UTF8.self).split(separator: "\n").first == """
            {"subject":"MD.XNAS.AAPL.TRADE","event_time":\(e5),"known_time":\(e5),"price":0.01,"size":100,"side":"buy","quote_event_time":null,"bid":null,"bid_size":null,"ask":null,"ask_size":null}
            """)
    }
}
