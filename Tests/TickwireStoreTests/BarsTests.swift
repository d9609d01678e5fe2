import Foundation
import TickwireTestSupport
import Testing
import TickwireCore
@testable import TickwireStore

@Suite(.timeLimit(.minutes(10))) struct BarsTests {
    let ev = Events()

    /// The fixture's tardis trades, 1m and 7s bars, against polars `group_by_dynamic` reading the CSV itself:
    /// open, high, low, close, volume and trade count exact, VWAP to 1e-12 relative.
    @Test(arguments: ["1m", "7s"]) func barsMatchPolarsGroupByDynamic(interval: String) throws {
        let reader = try StoreReader(directory: TardisTests.imported.dir)
        let q = try StoreQuery(subjects: "MD.>", from: "2020-02-22", to: "2020-02-23")
        let bars = try Bars.compute(reader, q, interval: StoreQuery.duration(interval, field: "--interval"))
        #expect(bars.count > 10)
        #expect(bars.reduce(0) { $0 + $1.trades } == TardisTests.imported.source.trades.count)
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try Bars.write(bars, format: .csv, to: ByteOutput(path: dir + "/bars.csv"))
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tardis_trades_nautilus.csv").path
        let script = """
            import sys, csv, polars as pl
            from decimal import Decimal
            df = pl.read_csv(sys.argv[1], schema_overrides={'price': pl.String, 'amount': pl.String})
            e8 = lambda c: pl.col(c).map_elements(lambda s: int(Decimal(s).scaleb(8)), return_dtype=pl.Int64)
            df = (df.with_columns(e8('price').alias('p'), e8('amount').alias('s'),
                                  (pl.col('timestamp') * 1000).cast(pl.Datetime('ns', 'UTC')).alias('t'))
                    .sort(['timestamp', 'local_timestamp'], maintain_order=True))
            bars = (df.group_by_dynamic('t', every=sys.argv[3])
                      .agg(pl.col('p').first().alias('open'), pl.col('p').max().alias('high'), pl.col('p').min().alias('low'),
                           pl.col('p').last().alias('close'), pl.col('s').sum().alias('volume'),
                           ((pl.col('p').cast(pl.Float64) * pl.col('s').cast(pl.Float64)).sum() / pl.col('s').cast(pl.Float64).sum() / 1e8).alias('vwap'),
                           pl.len().alias('trades')))
            mine = list(csv.DictReader(open(sys.argv[2])))
            assert len(mine) == bars.height, f'{len(mine)} bars, polars {bars.height}'
            for m, p in zip(mine, bars.iter_rows(named=True)):
                assert int(m['bar_start']) == int(p['t'].timestamp()) * 10**9, (m, p)
                for k in ('open', 'high', 'low', 'close', 'volume'):
                    assert int(Decimal(m[k]).scaleb(8)) == p[k], (k, m, p)
                assert int(m['trades']) == p['trades'], (m, p)
                assert abs(float(m['vwap']) - p['vwap']) <= 1e-12 * p['vwap'], (m, p)
                assert m['subject'] == 'MD.BINANCE-FUTURES.BTCUSDT.TRADE'
            print('ok', len(mine))
            """
        #expect(try python(script, [fixture, dir + "/bars.csv", interval]) == "ok \(bars.count)\n")
    }

    /// As known at K: a correction counts from its known time on, a busted trade until the bust is known.
    @Test func barsAreAsKnownAtK() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(1), known: t(1), price: 100, size: 10, id: 1),            // prices in cents: 1.00,
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2), price: 110, size: 30, id: 2),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(100), price: 120, size: 30, id: 2),    // correction
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(3), known: t(3), price: 90, size: 20, id: 3),
            ev.bust("MD.XNAS.AAPL.BUST", at: t(3), known: t(200), id: 3),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(61), known: t(61), price: 95, size: 5, id: 4),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(2), known: t(2), bid: 1, ask: 2),
        ], to: dir)
        let reader = try StoreReader(directory: dir)
        func bars(asOf: Nanos?) throws -> [String] {
            try Bars.compute(reader, StoreQuery(subjects: SubjectPattern("MD.>"), from: t(0), to: t(3600), asOf: asOf), interval: 60_000_000_000)
                .map { b in
                    var line = [UInt8](), b = b
                    b.start -= sessionOpen.rawValue     // from the session open
                    b.appendCSV(to: &line)
                    return String(decoding: line, as: UTF8.self)
                }
        }
        #expect(try bars(asOf: t(50)) == ["MD.XNAS.AAPL.TRADE,0,1,1.1,0.9,0.9,60,1.0166666666666666,3"])
        #expect(try bars(asOf: t(150)) == ["MD.XNAS.AAPL.TRADE,0,1,1.2,0.9,0.9,60,1.0666666666666667,3",
                                           "MD.XNAS.AAPL.TRADE,60000000000,0.95,0.95,0.95,0.95,5,0.95,1"])
        #expect(try bars(asOf: nil) == ["MD.XNAS.AAPL.TRADE,0,1,1.2,1,1.2,40,1.15,2",
                                        "MD.XNAS.AAPL.TRADE,60000000000,0.95,0.95,0.95,0.95,5,0.95,1"])
        #expect(throws: StoreError.self) { try Bars.compute(reader, StoreQuery(subjects: SubjectPattern(">"), from: t(0), to: t(1)), interval: 0) }
    }
}
