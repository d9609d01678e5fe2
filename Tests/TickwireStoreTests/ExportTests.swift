import Foundation
import TickwireTestSupport
import Testing
import TickwireCore
@testable import TickwireStore

/// Runs a Python script (argv after it) and returns its standard output; a failure (a missing module included:
/// Tools/setup.sh installs polars, pyarrow, pandas and duckdb) is recorded with its standard error.
func python(_ script: String, _ args: [String], seconds: Double = 300) throws -> String {
    let p = try ChildProcess("/usr/bin/env", ["python3", "-c", script] + args)
    let status = p.wait(seconds: seconds)
    if status != 0 {
        if status == nil { p.signal(SIGKILL) }
        Issue.record("python3 exited \(status.map(String.init) ?? "(timed out)"):\n\(p.stderr)")
    }
    return p.stdout
}

/// Python that turns a table's rows into canonical lines: decimals as e8 integers, times as integer
/// nanoseconds, nulls empty, every column in the given order; the lines sorted.
let canonicalPython = """
    from decimal import Decimal
    import datetime
    def cell(v):
        if v is None: return ''
        if isinstance(v, Decimal): return str(int(v.scaleb(8)))
        if isinstance(v, (datetime.date,)): return v.isoformat()[:10]
        return str(v)
    def lines(rows):
        return sorted('|'.join(cell(v) for v in r) for r in rows)

    """

/// The same lines from the store (`reader.events`), with the Parquet dataset's `date` and `venue` appended.
func canonicalLines(_ events: [StoredEvent], partition: Bool) -> [String] {
    events.map { s in
        let e = s.event
        let isTrade = e.kind == .trade || e.kind == .bust, isQuote = e.kind == .quote
        var cells = [s.subject, e.kind.name, String(e.eventTime.rawValue), String(e.knownTime.rawValue)]
        cells += isTrade ? [String(e.a), String(e.b), Frames.sides[Int(e.flags <= 2 ? e.flags : 0)], String(UInt64(bitPattern: e.c))] : ["", "", "", ""]
        cells += isQuote ? [String(e.a), String(e.b), String(e.c), String(e.d)] : ["", "", "", ""]
        cells += [String(e.flags), String(e.source), String(e.a), String(e.b), String(e.c), String(e.d)]
        if partition {
            let root = Layout.root(ofSubject: s.subject)
            cells += [Layout.dateText(day: Layout.day(of: e.eventTime.rawValue)), root.hasPrefix("MD.") ? String(root.dropFirst(3)) : root]
        }
        return cells.joined(separator: "|")
    }.sorted()
}

let eventColumns = "subject,kind,event_time,known_time,price,size,side,trade_id,bid,bid_size,ask,ask_size,flags,source,a,b,c,d"

@Suite(.timeLimit(.minutes(10))) struct ExportTests {
    let ev = Events()

    /// Trades, a correction, a bust, quotes (over 70,000: several record batches), a status, on two days and two
    /// venues.
    func writeMixedStore(_ dir: String) throws -> [StoredEvent] {
        let day2 = 86_400.0
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1.5), bid: 100, ask: 101),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2), price: 100, id: 1),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(9), price: 102, id: 1),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(3), known: t(3), price: 103, size: 7, id: 2),
            ev.bust("MD.XNAS.AAPL.BUST", at: t(3), known: t(4), id: 2),
            .status(ev.table.intern(text: "MD.XNAS.AAPL.STATUS"), Status(category: .trading, state: UInt8(ascii: "H"), reason: "LUDP"),
                    eventTime: t(5), knownTime: t(5)),
            ev.trade("MD.BATS.MSFT.TRADE", at: t(day2 + 1), known: t(day2 + 1), price: -3, id: UInt64.max),
            ev.quote("MD.BATS.MSFT.QUOTE", at: t(day2 + 2), known: t(day2 + 2), bid: 7, ask: 8),
        ] + (0..<70_000).map { ev.quote("MD.XNAS.MSFT.QUOTE", at: t(6 + Double($0) * 0.001), known: t(7), bid: 7 + Int64($0 % 13), ask: 8) }, to: dir)
        return try read(dir, from: t(-3600), to: t(3 * 86_400))
    }

    /// The IPC stream and file hold the typed columns; pyarrow reads both (equal), polars reads the stream and
    /// pandas gets it through pyarrow; every value survives exactly. Decimals are 64 bits wide unless 128 is
    /// asked for (the same values), dictionary indices as narrow as their dictionaries allow.
    @Test func arrowStreamAndFileReadIntoPyarrowPolarsAndPandas() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let events = try writeMixedStore(dir)
        let q = try StoreQuery(subjects: ">", from: "2026-01-05", to: "2026-01-07")
        let stream = dir + "/out.arrows", file = dir + "/out.arrow", wide = dir + "/out128.arrow"
        let rows = try Frames.writeArrow(StoreReader(directory: dir), q, to: ByteOutput(path: stream))
        #expect(rows == events.count && rows == 70_006)   // one correction supersedes, one bust voids
        #expect(try Frames.writeArrow(StoreReader(directory: dir), q, to: ByteOutput(path: file), layout: .file) == rows)
        #expect(try Frames.writeArrow(StoreReader(directory: dir), q, to: ByteOutput(path: wide), layout: .file, decimals: .bits128) == rows)
        let script = canonicalPython + """
            import sys, pyarrow as pa, pyarrow.ipc as ipc, polars as pl, pandas as pd
            cols = sys.argv[3].split(',')
            with open(sys.argv[1], 'rb') as f:
                t = ipc.open_stream(f).read_all()
            assert t.equals(ipc.open_file(sys.argv[2]).read_all()), 'stream and file differ'
            wide = ipc.open_file(sys.argv[4]).read_all()
            assert wide.schema.field('bid').type == pa.decimal128(18, 8), wide.schema
            assert wide.cast(t.schema).equals(t), 'decimal128 and decimal64 differ'
            print(', '.join(f'{f.name}: {f.type}' for f in t.schema if f.name in ('subject', 'event_time', 'price', 'side', 'trade_id', 'flags', 'source')))
            for c in ('event_time', 'known_time'):
                t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(pa.int64()))
            for line in lines(zip(*[t.column(c).to_pylist() for c in cols])): print(line)
            df = pl.read_ipc_stream(sys.argv[1])
            print(df.height, df.schema['price'], df.schema['event_time'], df.schema['subject'])
            pdf = pd.read_feather(sys.argv[2])
            print(len(pdf), pdf['event_time'].dtype, pdf['side'].iloc[1])
            """
        let out = try python(script, [stream, file, eventColumns, wide]).split(separator: "\n").map(String.init)
        try #require(out.count == rows + 3)
        #expect(out[0] == "subject: dictionary<values=string, indices=int8, ordered=0>, event_time: timestamp[ns, tz=UTC], price: decimal64(18, 8), side: dictionary<values=string, indices=int8, ordered=0>, trade_id: uint64, flags: uint8, source: uint16")
        #expect(Array(out[1...rows]) == canonicalLines(events, partition: false))
        #expect(out[rows + 1] == "70006 Decimal(precision=18, scale=8) Datetime(time_unit='ns', time_zone='UTC') Categorical")
        #expect(out[rows + 2].hasPrefix("70006 datetime64[ns, UTC] buy"))
    }

    /// The join's Arrow rows are the CSV's rows: trade id, the quote's known time, nulls where nothing matched.
    @Test func asOfJoinArrowHasTheJoinsRows() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(0.5), known: t(0.6), price: 99, id: 7),      // before any quote
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1.5), bid: 100, ask: 101),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2), price: 100, id: 8),
            ev.quote("MD.XNAS.MSFT.QUOTE", at: t(1), known: t(3), bid: 7, ask: 8),
            ev.trade("MD.XNAS.MSFT.TRADE", at: t(2), known: t(2.5), price: 8, size: 3, id: 9),
        ], to: dir)
        let j = try AsOfJoin(trades: SubjectPattern("MD.>"), quotes: SubjectPattern("MD.>"), from: t(0), to: t(10))
        let reader = try StoreReader(directory: dir)
        let file = dir + "/join.arrows"
        #expect(try Frames.asOfJoin(reader, j) { try ArrowWriter(fields: $0, out: ByteOutput(path: file)) } == 3)
        var expected = [String]()
        try reader.asOfJoin(j) { b in
            for i in 0..<b.count {
                let r = b.row(i), m = b.match[i]
                let q = m < 0 ? ["", "", "", "", "", ""] : [String(b.quotes.eventTime[m]), String(b.quotes.knownTime[m]), String(b.quotes.bid[m]),
                                                            String(b.quotes.bidSize[m]), String(b.quotes.ask[m]), String(b.quotes.askSize[m])]
                expected.append(([r.subject, String(r.eventTime.rawValue), String(r.knownTime.rawValue), String(r.price.e8), String(r.size.e8),
                                  r.side.description, String(r.tradeID)] + q).joined(separator: "|"))
            }
        }
        let script = canonicalPython + """
            import sys, pyarrow as pa, pyarrow.ipc as ipc
            with open(sys.argv[1], 'rb') as f:
                t = ipc.open_stream(f).read_all()
            for c in ('event_time', 'known_time', 'quote_event_time', 'quote_known_time'):
                t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(pa.int64()))
            for line in lines(zip(*[c.to_pylist() for c in t.columns])): print(line)
            """
        #expect(try python(script, [file]) == expected.sorted().joined(separator: "\n") + "\n")
        #expect(expected.contains { $0.hasSuffix("|7||||||") })
    }

    /// The hive-partitioned Parquet dataset reads as it is in DuckDB, polars and pyarrow, with every value and the
    /// partition columns exactly as the store has them.
    @Test func parquetDatasetReadsInDuckDBPolarsAndPyarrow() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let events = try writeMixedStore(dir)
        let q = try StoreQuery(subjects: ">", from: "2026-01-05", to: "2026-01-07")
        let out = dir + "/dataset"
        let (rows, files) = try ParquetExport.write(StoreReader(directory: dir), q, toDirectory: out)
        #expect(rows == events.count)
        #expect(files.map { String($0.dropFirst(out.count + 1)) } == ["date=2026-01-05/venue=XNAS/part-0.parquet", "date=2026-01-06/venue=BATS/part-0.parquet"])
        // A second export into the same directory is refused, not mixed in.
        #expect(throws: StoreError.self) { try ParquetExport.write(StoreReader(directory: dir), q, toDirectory: out) }
        let expected = canonicalLines(events, partition: true).joined(separator: "\n") + "\n"
        let cols = eventColumns + ",date,venue"
        let duck = canonicalPython + """
            import sys, duckdb
            cols = sys.argv[2].split(',')
            sel = ', '.join(f'epoch_ns({c})' if c.endswith('_time') else ('CAST(date AS VARCHAR)' if c == 'date' else c) for c in cols)
            rows = duckdb.sql(f"SELECT {sel} FROM read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true)").fetchall()
            for line in lines(rows): print(line)
            """
        let polars = canonicalPython + """
            import sys, polars as pl
            cols = sys.argv[2].split(',')
            df = pl.read_parquet(sys.argv[1], hive_partitioning=True)
            df = df.with_columns(pl.col('event_time', 'known_time').cast(pl.Int64), pl.col('date').cast(pl.String))
            for line in lines(df.select(cols).iter_rows()): print(line)
            """
        let pyarrow = canonicalPython + """
            import sys, pyarrow as pa, pyarrow.parquet as pq
            cols = sys.argv[2].split(',')
            t = pq.read_table(sys.argv[1])
            for c in ('event_time', 'known_time'):
                t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(pa.int64()))
            t = t.set_column(t.schema.get_field_index('date'), 'date', t.column('date').cast(pa.string()))
            for line in lines(zip(*[t.column(c).to_pylist() for c in cols])): print(line)
            """
        for (engine, script) in [("duckdb", duck), ("polars", polars), ("pyarrow", pyarrow)] {
            let got = try python(script, [out, cols])
            #expect(got == expected, "\(engine) reads the dataset differently")
        }
    }
}
