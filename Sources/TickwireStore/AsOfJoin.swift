import TickwireCore

/// Which quote an as-of join takes for a trade at time t.
public enum AsOfDirection: String, Sendable, CaseIterable {
    /// The last quote at or before t (before t when strict): the prevailing quote.
    case backward
    /// The first quote at or after t (after t when strict).
    case forward
    /// Whichever of the two is closer in time; the backward one on a tie.
    case nearest
}

/// An as-of join: each trade with event time in [from, to) matching `trades`, with the quote of its stem (the
/// trade subject with its last token replaced by `QUOTE`, when that matches `quotes`) chosen by `direction`,
/// both sides as known at `asOf`.
public struct AsOfJoin: Sendable, Equatable {
    public var trades: SubjectPattern
    public var quotes: SubjectPattern
    public var from: Nanos
    public var to: Nanos
    public var asOf: Nanos?
    public var direction: AsOfDirection
    public var strict: Bool
    /// The largest distance between trade and quote event times, in nanoseconds; nil for none.
    public var tolerance: Int64?
    /// `.event` (the default): trades by event time in [from, to), each with the quote prevailing at its event
    /// time as known at `asOf`. `.known`: every trade version known in [from, to), each with the quote this
    /// process had when the trade arrived — times compared are known times (`tolerance` too), and a quote not
    /// yet known at the trade's known time is never taken.
    public var time: TimeAxis = .event
    /// How far outside [from, to) a prevailing (or next) quote is looked for when there is no tolerance.
    public static let defaultReach: Int64 = 7 * Nanos.perDay

    /// - Throws: `StoreError.badQuery` when from is after to or the tolerance is negative.
    public init(trades: SubjectPattern, quotes: SubjectPattern, from: Nanos, to: Nanos, asOf: Nanos? = nil,
                direction: AsOfDirection = .backward, strict: Bool = false, tolerance: Int64? = nil) throws(StoreError) {
        guard from <= to else { throw .badQuery(field: "--from/--to", reason: "from \(from.iso8601) is after to \(to.iso8601)") }
        if let t = tolerance, t < 0 { throw .badQuery(field: "--tolerance", reason: "it is negative") }
        self.trades = trades; self.quotes = quotes; self.from = from; self.to = to; self.asOf = asOf
        self.direction = direction; self.strict = strict; self.tolerance = tolerance
    }

    var reach: Int64 { tolerance ?? AsOfJoin.defaultReach }
}

/// The visible quotes of one subject in time order, column by column; reused from subject to subject.
public struct QuoteColumns {
    public internal(set) var eventTime: [Int64] = []
    public internal(set) var knownTime: [Int64] = []
    public internal(set) var bid: [Int64] = []
    public internal(set) var bidSize: [Int64] = []
    public internal(set) var ask: [Int64] = []
    public internal(set) var askSize: [Int64] = []
    public var count: Int { eventTime.count }
    /// What a quote's row needs of the store (not its tag).
    static let columns: StoreColumns = [.eventTime, .knownTime, .a, .b, .c, .d]

    mutating func removeAll() {
        eventTime.removeAll(keepingCapacity: true); knownTime.removeAll(keepingCapacity: true); bid.removeAll(keepingCapacity: true)
        bidSize.removeAll(keepingCapacity: true); ask.removeAll(keepingCapacity: true); askSize.removeAll(keepingCapacity: true)
    }

    mutating func append(_ b: BlockBuffer, _ i: Int) {
        eventTime.append(b.eventTime[i]); knownTime.append(b.knownTime[i]); bid.append(b.a[i]); bidSize.append(b.b[i]); ask.append(b.c[i]); askSize.append(b.d[i])
    }

    mutating func append(_ b: BlockBuffer) {
        eventTime.append(contentsOf: UnsafeBufferPointer(start: b.eventTime, count: b.count))
        knownTime.append(contentsOf: UnsafeBufferPointer(start: b.knownTime, count: b.count))
        bid.append(contentsOf: UnsafeBufferPointer(start: b.a, count: b.count))
        bidSize.append(contentsOf: UnsafeBufferPointer(start: b.b, count: b.count))
        ask.append(contentsOf: UnsafeBufferPointer(start: b.c, count: b.count))
        askSize.append(contentsOf: UnsafeBufferPointer(start: b.d, count: b.count))
    }
}

/// A block of joined trades: the trades' columns and, per trade, the index of its quote in `quotes` (-1: none).
/// Valid only during the callback.
public struct AsOfBatch {
    public let subject: String
    public let trades: BlockBuffer
    public let match: UnsafeBufferPointer<Int>
    public let quotes: QuoteColumns
    public var count: Int { trades.count }
    /// What a trade's row needs of the store: column d is not decoded (`trades.d` holds nothing of the trade).
    static let tradeColumns: StoreColumns = [.eventTime, .knownTime, .tag, .a, .b, .c]

    /// Row `i` as a value.
    public func row(_ i: Int) -> AsOfRow {
        let q = match[i]
        return AsOfRow(subject: subject, eventTime: Nanos(trades.eventTime[i]), knownTime: Nanos(trades.knownTime[i]),
                       price: Price(e8: trades.a[i]), size: Quantity(e8: trades.b[i]),
                       side: Side(rawValue: UInt8(truncatingIfNeeded: trades.tag[i] >> 8)) ?? .unknown,
                       tradeID: UInt64(bitPattern: trades.c[i]),
                       quote: q < 0 ? nil : AsOfRow.MatchedQuote(eventTime: Nanos(quotes.eventTime[q]),
                           bid: Price(e8: quotes.bid[q]), bidSize: Quantity(e8: quotes.bidSize[q]),
                           ask: Price(e8: quotes.ask[q]), askSize: Quantity(e8: quotes.askSize[q])))
    }
}

/// One joined row: the trade's own fields and the matched quote's, if any.
public struct AsOfRow: Sendable, Equatable {
    public struct MatchedQuote: Sendable, Equatable {
        public var eventTime: Nanos
        public var bid: Price
        public var bidSize: Quantity
        public var ask: Price
        public var askSize: Quantity
    }
    public var subject: String
    public var eventTime: Nanos
    public var knownTime: Nanos
    public var price: Price
    public var size: Quantity
    public var side: Side
    public var tradeID: UInt64
    public var quote: MatchedQuote?

    public static let csvHeader = "subject,event_time,known_time,price,size,side,quote_event_time,bid,bid_size,ask,ask_size"

    /// One CSV line (no newline): times in integer nanoseconds, prices and sizes as exact decimals, the quote's
    /// fields empty when none matched.
    public func appendCSV(to out: inout [UInt8]) {
        func comma() { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: subject.utf8); comma()
        FixedPoint.appendSigned(eventTime.rawValue, to: &out); comma()
        FixedPoint.appendSigned(knownTime.rawValue, to: &out); comma()
        FixedPoint.appendDecimal(e8: price.e8, to: &out); comma()
        FixedPoint.appendDecimal(e8: size.e8, to: &out); comma()
        out.append(contentsOf: side.description.utf8); comma()
        if let q = quote {
            FixedPoint.appendSigned(q.eventTime.rawValue, to: &out); comma()
            FixedPoint.appendDecimal(e8: q.bid.e8, to: &out); comma()
            FixedPoint.appendDecimal(e8: q.bidSize.e8, to: &out); comma()
            FixedPoint.appendDecimal(e8: q.ask.e8, to: &out); comma()
            FixedPoint.appendDecimal(e8: q.askSize.e8, to: &out)
        } else {
            out.append(contentsOf: ",,,,".utf8)
        }
    }

    /// One JSON object (no newline) with the CSV's fields; the quote's are `null` when none matched.
    public func appendJSON(to out: inout [UInt8]) {
        func key(_ k: String) { out.append(contentsOf: ",\"\(k)\":".utf8) }
        out.append(contentsOf: "{\"subject\":".utf8)
        EventText.appendJSONString(subject, to: &out)
        key("event_time"); FixedPoint.appendSigned(eventTime.rawValue, to: &out)
        key("known_time"); FixedPoint.appendSigned(knownTime.rawValue, to: &out)
        key("price"); FixedPoint.appendDecimal(e8: price.e8, to: &out)
        key("size"); FixedPoint.appendDecimal(e8: size.e8, to: &out)
        key("side"); EventText.appendJSONString(side.description, to: &out)
        let q = quote
        key("quote_event_time"); if let q { FixedPoint.appendSigned(q.eventTime.rawValue, to: &out) } else { out.append(contentsOf: "null".utf8) }
        for (k, v) in [("bid", q?.bid.e8), ("bid_size", q?.bidSize.e8), ("ask", q?.ask.e8), ("ask_size", q?.askSize.e8)] {
            key(k)
            if let v { FixedPoint.appendDecimal(e8: v, to: &out) } else { out.append(contentsOf: "null".utf8) }
        }
        out.append(UInt8(ascii: "}"))
    }
}

extension StoreReader {
    public enum JoinFormat: String, Sendable, CaseIterable { case csv, jsonl }

    /// Runs a join and writes one row per trade, CSV (with a header line) or JSON lines.
    /// - Returns: the rows written.
    @discardableResult
    public func writeAsOfJoin(_ j: AsOfJoin, format: JoinFormat, to out: ByteOutput) throws -> Int {
        var rows = 0
        if format == .csv { out.buffer.append(contentsOf: (AsOfRow.csvHeader + "\n").utf8) }
        try asOfJoin(j) { batch in
            for i in 0..<batch.count {
                let row = batch.row(i)
                if format == .csv { row.appendCSV(to: &out.buffer) } else { row.appendJSON(to: &out.buffer) }
                out.buffer.append(UInt8(ascii: "\n"))
                try out.drainIfFull()
            }
            rows += batch.count
        }
        try out.drain()
        return rows
    }

    /// Runs an as-of join: a per-subject merge over columns already sorted by event time — no sort at query
    /// time. Calls `body` once per block of trades, subjects in text order, trades in (event time, known time)
    /// order.
    /// - Throws: `StoreError` from opening a partition, or what `body` throws.
    /// - Complexity: O(trades + quotes read).
    public func asOfJoin(_ j: AsOfJoin, _ body: (AsOfBatch) throws -> Void) throws {
        if j.time == .known { return try asOfJoinKnown(j, body) }
        let tradeQuery = try StoreQuery(subjects: j.trades, from: j.from, to: j.to, asOf: j.asOf)
        // Trade subjects across the window's partitions, grouped by text in day order.
        var tradeParts = [String: [(SegmentReader, Int)]]()
        for (_, seg, subjects) in try matching(tradeQuery) {
            // Trades only, whatever the pattern: `MD.XNAS.>` must not join quotes or statuses as if they were trades.
            for s in subjects where seg.subjects[s].hasSuffix(".TRADE") { tradeParts[seg.subjects[s], default: []].append((seg, s)) }
        }
        let limit = j.asOf?.rawValue ?? .max
        let buffer = BlockBuffer(), scratch = BlockBuffer()
        var quotes = QuoteColumns()
        var match = [Int](repeating: -1, count: BlockBuffer.capacity)
        for subject in tradeParts.keys.sorted() {
            let quoteSubject = String(Layout.stem(subject)) + ".QUOTE"
            quotes.removeAll()
            if j.quotes.matches(subjectText: quoteSubject) {
                try gatherQuotes(quoteSubject, j, limit, into: &quotes, scratch: scratch)
            }
            var q = 0   // quotes[..<q] have event time ≤ t (or < t when strict) for the current trade
            let strictBackward = j.strict && j.direction != .forward
            for (seg, s) in tradeParts[subject]! {
                let r = seg.ranges[s]
                for b in seg.firstBlock(subject: s, from: j.from.rawValue)..<(r.firstBlock + r.blockCount) {
                    if seg.blockInfos[b].minEventTime >= j.to.rawValue { break }
                    let n = seg.read(block: b, from: j.from.rawValue, to: j.to.rawValue, asOf: limit, into: buffer,
                                     columns: AsOfBatch.tradeColumns)
                    guard n > 0 else { continue }
                    quotes.eventTime.withUnsafeBufferPointer { qt in
                        match.withUnsafeMutableBufferPointer { m in
                            for i in 0..<n { m[i] = Self.pick(buffer.eventTime[i], qt, &q, j, strictBackward: strictBackward) }
                        }
                    }
                    try match.withUnsafeBufferPointer { mp in
                        try body(AsOfBatch(subject: subject, trades: buffer, match: UnsafeBufferPointer(rebasing: mp[0..<n]), quotes: quotes))
                    }
                }
            }
        }
    }

    /// The quote for a trade at time t among quote times `qt` (sorted), `q` being where the previous trade's
    /// search left off (trades come in time order). - Returns: the index in `qt`, or -1.
    @inline(__always)
    static func pick(_ t: Int64, _ qt: UnsafeBufferPointer<Int64>, _ q: inout Int, _ j: AsOfJoin, strictBackward: Bool) -> Int {
        let qn = qt.count
        if strictBackward { while q < qn && qt[q] < t { q &+= 1 } } else { while q < qn && qt[q] <= t { q &+= 1 } }
        var m = -1
        switch j.direction {
        case .backward:
            m = q - 1
        case .forward:
            // First quote ≥ t (> t when strict): skip the equal ones when strict.
            var f = q
            while f > 0 && qt[f - 1] == t && !j.strict { f -= 1 }
            if j.strict { while f < qn && qt[f] <= t { f += 1 } }
            m = f < qn ? f : -1
        case .nearest:
            let back = q - 1
            var f = q
            while f < qn && qt[f] == t { f += 1 } // equal times already count as backward
            if j.strict { while f < qn && qt[f] <= t { f += 1 } }
            let fwd = f < qn ? f : -1
            if back >= 0 && fwd >= 0 { m = t &- qt[back] <= qt[fwd] &- t ? back : fwd } else { m = back >= 0 ? back : fwd }
        }
        if m >= 0, let tol = j.tolerance, (qt[m] > t ? qt[m] &- t : t &- qt[m]) > tol { m = -1 }
        return m
    }

    /// The join along known time (`AsOfJoin.time` `.known`): per trade subject, its trade versions known in the
    /// window in known-time order, each matched against its quotes by known time (those known within the reach
    /// of the window). Holds one subject's trades and quotes in memory at a time.
    private func asOfJoinKnown(_ j: AsOfJoin, _ body: (AsOfBatch) throws -> Void) throws {
        var tradeQuery = try StoreQuery(subjects: j.trades, from: j.from, to: j.to, asOf: j.asOf)
        tradeQuery.time = .known
        var quoteQuery = try StoreQuery(subjects: j.quotes, from: Nanos(j.from.rawValue < Int64.min + j.reach ? Int64.min : j.from.rawValue - j.reach),
                                        to: Nanos(j.to.rawValue > Int64.max - j.reach ? Int64.max : j.to.rawValue &+ j.reach), asOf: j.asOf)
        quoteQuery.time = .known
        let buffer = BlockBuffer()
        var quotes = QuoteColumns()
        var match = [Int](repeating: -1, count: BlockBuffer.capacity)
        let strictBackward = j.strict && j.direction != .forward
        try knownRows(tradeQuery, subjectFilter: { $0.hasSuffix(".TRADE") }) { subject, trades in
            quotes.removeAll()
            let quoteSubject = String(Layout.stem(subject)) + ".QUOTE"
            if j.quotes.matches(subjectText: quoteSubject) {
                try knownRows(quoteQuery, subjectFilter: { $0 == quoteSubject }) { _, rows in
                    for e in rows {
                        quotes.eventTime.append(e.eventTime.rawValue); quotes.knownTime.append(e.knownTime.rawValue)
                        quotes.bid.append(e.a); quotes.bidSize.append(e.b); quotes.ask.append(e.c); quotes.askSize.append(e.d)
                    }
                }
            }
            var q = 0
            for start in stride(from: 0, to: trades.count, by: BlockBuffer.capacity) {
                let n = min(BlockBuffer.capacity, trades.count - start)
                for i in 0..<n {
                    let e = trades[start + i]
                    buffer.column(.eventTime)[i] = e.eventTime.rawValue; buffer.column(.knownTime)[i] = e.knownTime.rawValue
                    buffer.column(.tag)[i] = packTag(e)
                    buffer.column(.a)[i] = e.a; buffer.column(.b)[i] = e.b; buffer.column(.c)[i] = e.c; buffer.column(.d)[i] = e.d
                }
                buffer.count = n
                quotes.knownTime.withUnsafeBufferPointer { qk in
                    match.withUnsafeMutableBufferPointer { m in
                        for i in 0..<n { m[i] = Self.pick(buffer.knownTime[i], qk, &q, j, strictBackward: strictBackward) }
                    }
                }
                try match.withUnsafeBufferPointer { mp in
                    try body(AsOfBatch(subject: subject, trades: buffer, match: UnsafeBufferPointer(rebasing: mp[0..<n]), quotes: quotes))
                }
            }
        }
    }

    /// The quotes of one subject a join may use: the last visible one before `from` (backward, nearest), those
    /// in [from, to), and the first at or after `to` (forward, nearest), each within the reach.
    private func gatherQuotes(_ subject: String, _ j: AsOfJoin, _ limit: Int64, into quotes: inout QuoteColumns,
                              scratch: BlockBuffer) throws(StoreError) {
        let from = j.from.rawValue, to = j.to.rawValue
        func segments(_ lo: Int64, _ hi: Int64) throws(StoreError) -> [(SegmentReader, Int)] {
            guard lo < hi else { return [] }
            return try self.segments(holding: subject, days: Layout.day(of: lo)...Layout.day(of: hi - 1), pattern: j.quotes)
        }
        if j.direction != .forward {
            // Walk back day by day to the prevailing quote.
            let earliest = from &- j.reach
            outer: for (seg, s) in try segments(earliest, from).reversed() {
                let r = seg.ranges[s]
                var b = seg.firstBlock(subject: s, from: from) // the block that may hold `from`; earlier ones before it
                if b == r.firstBlock + r.blockCount { b -= 1 }
                while b >= r.firstBlock {
                    if seg.read(block: b, from: earliest, to: from, asOf: limit, into: scratch, columns: QuoteColumns.columns) > 0 {
                        quotes.append(scratch, scratch.count - 1)
                        break outer
                    }
                    b -= 1
                }
            }
        }
        for (seg, s) in try segments(from, to) {
            let r = seg.ranges[s]
            for b in seg.firstBlock(subject: s, from: from)..<(r.firstBlock + r.blockCount) {
                if seg.blockInfos[b].minEventTime >= to { break }
                if seg.read(block: b, from: from, to: to, asOf: limit, into: scratch, columns: QuoteColumns.columns) > 0 { quotes.append(scratch) }
            }
        }
        if j.direction != .backward {
            let latest = to > Int64.max - j.reach ? Int64.max : to &+ j.reach
            outer: for (seg, s) in try segments(to, latest) {
                let r = seg.ranges[s]
                for b in seg.firstBlock(subject: s, from: to)..<(r.firstBlock + r.blockCount) {
                    if seg.read(block: b, from: to, to: latest, asOf: limit, into: scratch, columns: QuoteColumns.columns) > 0 {
                        quotes.append(scratch, 0)
                        break outer
                    }
                }
            }
        }
    }
}
