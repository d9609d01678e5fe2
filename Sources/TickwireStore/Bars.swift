import TickwireCore

/// One bar: the trades of one subject with event time in [start, start + interval), as known at the query's K.
public struct Bar: Sendable, Equatable {
    public var subject: String
    /// The interval's start, nanoseconds since the epoch (intervals are aligned to the epoch: 1m bars start on
    /// whole minutes).
    public var start: Int64
    /// First and last by (event time, known time), e8 prices.
    public var open: Int64, high: Int64, low: Int64, close: Int64
    /// Sum of sizes, e8.
    public var volume: Int64
    /// Sum of price × size, exact (e16).
    public var notional: Int128
    public var trades: Int

    /// Volume-weighted average price: notional ÷ volume (the price when the volume is zero).
    public var vwap: Double { volume == 0 ? Double(close) / 1e8 : Double(notional) / Double(volume) / 1e8 }

    public static let csvHeader = "subject,bar_start,open,high,low,close,volume,vwap,trades"

    /// One CSV line (no newline): the start in integer nanoseconds, prices and volume as exact decimals.
    public func appendCSV(to out: inout [UInt8]) {
        func comma() { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: subject.utf8); comma()
        FixedPoint.appendSigned(start, to: &out); comma()
        for v in [open, high, low, close, volume] { FixedPoint.appendDecimal(e8: v, to: &out); comma() }
        out.append(contentsOf: vwap.description.utf8); comma()
        FixedPoint.appendSigned(Int64(trades), to: &out)
    }

    /// One JSON object (no newline) with the CSV's fields.
    public func appendJSON(to out: inout [UInt8]) {
        out.append(contentsOf: "{\"subject\":".utf8)
        EventText.appendJSONString(subject, to: &out)
        out.append(contentsOf: ",\"bar_start\":".utf8); FixedPoint.appendSigned(start, to: &out)
        for (k, v) in [("open", open), ("high", high), ("low", low), ("close", close), ("volume", volume)] {
            out.append(contentsOf: ",\"\(k)\":".utf8); FixedPoint.appendDecimal(e8: v, to: &out)
        }
        out.append(contentsOf: ",\"vwap\":\(vwap),\"trades\":\(trades)}".utf8)
    }
}

/// Time bars (open, high, low, close, volume, VWAP, trade count) per TRADE subject, from the store as known at
/// a moment: `tickwire query bars`.
public enum Bars {
    public enum Format: String, Sendable, CaseIterable { case csv, jsonl, arrow }

    /// The bars of every TRADE subject matching the query, by subject text then start; only intervals with a
    /// trade have a bar. Busted and superseded trades are left out as the query's K says.
    /// - Throws: `StoreError.badQuery` naming `--interval` when it is not positive; `StoreError` from the store.
    public static func compute(_ reader: StoreReader, _ q: StoreQuery, interval: Int64) throws -> [Bar] {
        guard interval > 0 else { throw StoreError.badQuery(field: "--interval", reason: "it must be longer than zero") }
        var bySubject = [String: [Bar]]()
        try reader.scan(q, columns: [.tag, .a, .b]) { batch in
            guard batch.subject.hasSuffix(".TRADE") else { return }
            let r = batch.rows
            var bars = bySubject.removeValue(forKey: batch.subject) ?? []
            for i in 0..<batch.count where r.tag[i] & 0xFF == Int64(EventKind.trade.rawValue) {
                let t = r.eventTime[i], price = r.a[i], size = r.b[i]
                let rem = t % interval
                let start = rem >= 0 ? t - rem : t - rem - interval
                if let last = bars.indices.last, bars[last].start == start {
                    bars[last].high = max(bars[last].high, price); bars[last].low = min(bars[last].low, price)
                    bars[last].close = price
                    bars[last].volume &+= size
                    bars[last].notional += Int128(price) * Int128(size)
                    bars[last].trades += 1
                } else {
                    bars.append(Bar(subject: batch.subject, start: start, open: price, high: price, low: price, close: price,
                                    volume: size, notional: Int128(price) * Int128(size), trades: 1))
                }
            }
            bySubject[batch.subject] = bars
        }
        return bySubject.keys.sorted().flatMap { bySubject[$0]! }
    }

    /// Bar columns: `subject`, `bar_start` timestamp[ns, UTC], `open`, `high`, `low`, `close`, `volume`
    /// decimal(18,8), `vwap` float64, `trades` int64.
    public static func fields(subjects: [String]) -> [FrameField] {
        [FrameField("subject", .text, dictionary: subjects), FrameField("bar_start", .timestamp),
         FrameField("open", .decimal), FrameField("high", .decimal), FrameField("low", .decimal),
         FrameField("close", .decimal), FrameField("volume", .decimal), FrameField("vwap", .float64),
         FrameField("trades", .int64)]
    }

    /// Writes bars as CSV (with a header line), JSON lines or an Arrow IPC stream.
    public static func write(_ bars: [Bar], format: Format, to out: ByteOutput, decimals: ArrowWriter.Decimals = .bits64,
                             metadata: [(key: String, value: String)] = []) throws {
        switch format {
        case .csv, .jsonl:
            if format == .csv { out.buffer.append(contentsOf: (Bar.csvHeader + "\n").utf8) }
            for bar in bars {
                if format == .csv { bar.appendCSV(to: &out.buffer) } else { bar.appendJSON(to: &out.buffer) }
                out.buffer.append(UInt8(ascii: "\n"))
                try out.drainIfFull()
            }
            try out.drain()
        case .arrow:
            var subjects = [String](), index = [String: Int64]()
            for b in bars where index[b.subject] == nil { index[b.subject] = Int64(subjects.count); subjects.append(b.subject) }
            let fields = Bars.fields(subjects: subjects)
            let w = try ArrowWriter(fields: fields, out: out, decimals: decimals, metadata: metadata)
            let batch = FrameBatch(fields)
            for b in bars {
                let row = batch.rows
                batch.set(0, row, index[b.subject]!); batch.set(1, row, b.start)
                batch.set(2, row, b.open); batch.set(3, row, b.high); batch.set(4, row, b.low); batch.set(5, row, b.close); batch.set(6, row, b.volume)
                batch.set(7, row, Int64(bitPattern: b.vwap.bitPattern)); batch.set(8, row, Int64(b.trades))
                batch.endRow()
                if batch.isFull { try w.write(batch); batch.removeAll() }
            }
            try w.write(batch)
            try w.finish()
        }
    }
}
