import Foundation
import Testing
import TickwireCore
@testable import TickwireStore

/// The real tardis.dev captures (Tests/Fixtures/PROVENANCE.md): Binance USD-M BTCUSDT trades and best bid/offer,
/// whose `timestamp` (exchange) and `local_timestamp` (capture) are the two time axes of each event.
final class TardisFixtureSource: EventSource, @unchecked Sendable {
    let name = "tardis-fixture"
    struct Row { var exchangeMicros: Int64; var localMicros: Int64; var fields: [Substring] }
    let trades: [Row], quotes: [Row]

    init() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
        func rows(_ file: String) throws -> [Row] {
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            return text.split(separator: "\n").dropFirst().map { line in
                let f = line.split(separator: ",", omittingEmptySubsequences: false)
                return Row(exchangeMicros: Int64(f[2])!, localMicros: Int64(f[3])!, fields: f)
            }
        }
        trades = try rows("tardis_trades_nautilus.csv")
        quotes = try rows("tardis_quotes_nautilus.csv")
    }

    /// Emits both files merged in capture (local timestamp) order, as a live feed would have delivered them.
    func run(into sink: EventSink, stop: StopSignal) throws {
        let trade = sink.subjects.intern(text: "MD.BINANCE-FUTURES.BTCUSDT.TRADE")
        let quote = sink.subjects.intern(text: "MD.BINANCE-FUTURES.BTCUSDT.QUOTE")
        var i = 0, j = 0
        while i < trades.count || j < quotes.count {
            if j >= quotes.count || (i < trades.count && trades[i].localMicros <= quotes[j].localMicros) {
                let r = trades[i]; i += 1
                sink.emit(.trade(trade, price: try Price(parsing: String(r.fields[6])), size: try Quantity(parsing: String(r.fields[7])),
                                 side: r.fields[5] == "buy" ? .buy : .sell, tradeID: UInt64(r.fields[4])!,
                                 eventTime: Nanos(r.exchangeMicros * 1000), knownTime: Nanos(r.localMicros * 1000)))
            } else {
                let r = quotes[j]; j += 1
                sink.emit(.quote(quote, bid: try Price(parsing: String(r.fields[6])), bidSize: try Quantity(parsing: String(r.fields[7])),
                                 ask: try Price(parsing: String(r.fields[5])), askSize: try Quantity(parsing: String(r.fields[4])),
                                 eventTime: Nanos(r.exchangeMicros * 1000), knownTime: Nanos(r.localMicros * 1000)))
            }
        }
    }

    func counters() -> [(name: String, value: UInt64)] { [] }
}

@Suite struct TardisTests {
    /// Imported once for the suite (the tests only read it); left under /tmp for inspection.
    static let imported: (source: TardisFixtureSource, dir: String, report: StoreImporter.Report) = {
        let source = try! TardisFixtureSource()
        let dir = scratchDirectory("tardis")
        return (source, dir, try! StoreImporter.importEvents(from: source, directory: dir))
    }()
    var source: TardisFixtureSource { Self.imported.source }
    var dir: String { Self.imported.dir }

    @Test func theImportSealsOnePartition() {
        #expect(Self.imported.report.events == 19_998)
        #expect(Self.imported.report.sealed.map(\.relativePath) == ["2020-02-22/MD.BINANCE-FUTURES"])
    }

    func query(_ k: Int64?) throws -> StoreQuery {
        try StoreQuery(subjects: SubjectPattern("MD.BINANCE-FUTURES.>"), from: Nanos(parsing: "2020-02-22"),
                       to: Nanos(parsing: "2020-02-23"), asOf: k.map { Nanos($0 * 1000) })
    }

    @Test(arguments: [0, 1, 2, 5_000, 9_998])
    func replayAsKnownAtALocalTimestampExcludesEverythingKnownLater(tradeRow: Int) throws {
        let k = source.trades[tradeRow].localMicros
        let got = try StoreReader(directory: dir).events(query(k))
        let expectedTrades = source.trades.filter { $0.localMicros <= k }
        let expectedQuotes = source.quotes.filter { $0.localMicros <= k }
        #expect(got.count == expectedTrades.count + expectedQuotes.count)
        #expect(got.allSatisfy { $0.event.knownTime.rawValue <= k * 1000 })
        #expect(got.filter { $0.event.kind == .trade }.map { $0.event.c }.sorted() == expectedTrades.map { Int64($0.fields[4])! }.sorted())
        // Replay order: event (exchange) time, then subject, then known time.
        #expect(zip(got, got.dropFirst()).allSatisfy { x, y in
            (x.event.eventTime, x.subject, x.event.knownTime) <= (y.event.eventTime, y.subject, y.event.knownTime)
        })
    }

    @Test func everyRowReadsBackExactlyAndReplaysAreByteIdentical() throws {
        let reader = try StoreReader(directory: dir)
        let all = try reader.events(query(nil))
        #expect(all.count == 19_998)
        let first = all.first { $0.event.kind == .trade && $0.event.c == 42_377_944 }
        #expect(first?.event.trade.price == (try Price(parsing: "9682")))
        #expect(first?.event.trade.size == (try Quantity(parsing: "0.132")))
        #expect(first?.event.eventTime == Nanos(1_582_329_602_111_000_000))
        #expect(first?.event.knownTime == Nanos(1_582_329_602_418_379_000))
        // Two replays through separate readers give the same bytes.
        func bytes() throws -> [UInt8] {
            let path = dir + "/replay-\(UInt32.random(in: 0...UInt32.max)).bin"
            try Replayer.run(StoreReader(directory: dir), query(1_582_333_000_000_000), pace: .max,
                             into: StreamReplaySink(ByteOutput(path: path), format: .binary))
            return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        }
        let a = try bytes(), b = try bytes()
        #expect(!a.isEmpty && a == b)
    }

    @Test func theJoinTakesTheLastQuoteKnownByK() throws {
        let k = source.trades[6_000].localMicros
        let j = try AsOfJoin(trades: SubjectPattern("MD.*.*.TRADE"), quotes: SubjectPattern("MD.*.*.QUOTE"),
                             from: Nanos(parsing: "2020-02-22"), to: Nanos(parsing: "2020-02-23"), asOf: Nanos(k * 1000))
        var joined = [AsOfRow]()
        try StoreReader(directory: dir).asOfJoin(j) { b in for i in 0..<b.count { joined.append(b.row(i)) } }
        // Brute force over the CSV rows: the last quote (by exchange time, then local time) at or before the trade,
        // among those captured by K.
        let known = source.quotes.filter { $0.localMicros <= k }.sorted { ($0.exchangeMicros, $0.localMicros) < ($1.exchangeMicros, $1.localMicros) }
        let trades = source.trades.filter { $0.localMicros <= k }.sorted { ($0.exchangeMicros, $0.localMicros) < ($1.exchangeMicros, $1.localMicros) }
        #expect(joined.count == trades.count)
        var q = 0, mismatches = [String]()
        for (row, t) in zip(joined, trades) {
            while q < known.count && known[q].exchangeMicros <= t.exchangeMicros { q += 1 }
            let want = q > 0 ? known[q - 1] : nil
            if row.tradeID != UInt64(t.fields[4])! || row.quote?.eventTime.rawValue != want.map({ $0.exchangeMicros * 1000 })
                || row.quote?.bid != want.map({ try! Price(parsing: String($0.fields[6])) }) {
                mismatches.append("trade \(t.fields[4])")
            }
        }
        #expect(mismatches.isEmpty)
        #expect(joined.filter { $0.quote == nil }.count < 5)
    }
}
